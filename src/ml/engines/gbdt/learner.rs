//! Leaf-wise tree growth on binned data with histogram subtraction.
//!
//! Rows of the current tree live in one index array; each leaf owns a contiguous range of it, so a split
//! is an in-place stable partition and a histogram build reads only that leaf's rows.

use std::ops::Range;
use std::sync::Arc;

use super::GbdtError;
use super::binning::{Binned, FeatureBins, LANES};
use super::par::balanced_ranges;
use super::pool::Workers;

/// Below this much work (rows × features) waking a worker costs more than it saves.
const PARALLEL_MIN_WORK: usize = 32 * 1024;

/// Several tasks per thread so a thread slowed by another process leaves its share to the others.
const TASKS_PER_THREAD: usize = 4;

/// Gradient and hessian of one row; f32 halves the memory traffic of the histogram loop.
#[derive(Clone, Copy, Default, Debug)]
pub(super) struct GradPair {
    pub g: f32,
    pub h: f32,
}

/// Gradient and hessian sums over a set of rows: also the histogram bin type. Bins carry no row count
/// (as in LightGBM): counts are estimated from the hessian, which keeps a bin at 16 bytes and the
/// histogram loop at one read-modify-write per feature.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub(super) struct Stats {
    pub g: f64,
    pub h: f64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.g += o.g;
        self.h += o.h;
    }

    fn minus(&self, o: &Stats) -> Stats {
        Stats { g: self.g - o.g, h: self.h - o.h }
    }
}

#[derive(Clone, Debug)]
pub(super) struct GrowConfig {
    pub num_leaves: usize,
    pub max_depth: usize,
    pub min_data_in_leaf: u32,
    pub min_sum_hessian: f64,
    pub lambda_l2: f64,
    pub min_gain_to_split: f64,
    pub threads: usize,
}

impl GrowConfig {
    /// The L2-regularised objective reduction of a leaf; splitting maximises the sum over both children.
    fn score(&self, s: &Stats) -> f64 {
        let d = s.h + self.lambda_l2;
        if d > 0.0 { s.g * s.g / d } else { 0.0 }
    }

    pub fn leaf_output(&self, s: &Stats) -> f64 {
        let d = s.h + self.lambda_l2;
        if d > 0.0 { -s.g / d } else { 0.0 }
    }
}

/// A candidate split: numeric bins `<= bin` go left, NaN goes left iff `default_left`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Split {
    pub feature: usize,
    pub bin: usize,
    pub default_left: bool,
    pub gain: f64,
    pub left: Stats,
    pub right: Stats,
}

/// An internal node in bin space; children as in [`super::model::Tree`] (negative = leaf `!c`).
#[derive(Clone, Debug)]
pub(super) struct BinNode {
    pub feature: usize,
    pub bin: usize,
    pub nan_bin: usize,
    pub default_left: bool,
    pub gain: f64,
    pub left: i32,
    pub right: i32,
}

impl BinNode {
    fn goes_left(&self, b: u8) -> bool {
        let b = b as usize;
        if b == self.nan_bin { self.default_left } else { b <= self.bin }
    }
}

pub(super) struct GrownTree {
    pub nodes: Vec<BinNode>,
    pub leaf_stats: Vec<Stats>,
    /// Each leaf's range in [`Learner::indices`].
    pub leaf_rows: Vec<Range<usize>>,
}

/// Leaf reached by training row `r`, walking the tree on bins.
pub(super) fn leaf_of_binned(nodes: &[BinNode], data: &Binned, r: usize) -> usize {
    if nodes.is_empty() {
        return 0;
    }
    let mut node = 0usize;
    loop {
        let n = &nodes[node];
        let child = if n.goes_left(data.bin(n.feature, r)) { n.left } else { n.right };
        if child < 0 {
            return !child as usize;
        }
        node = child as usize;
    }
}

struct Leaf {
    rows: Range<usize>,
    depth: usize,
    stats: Stats,
    /// Node whose child pointer must be rewritten when this leaf is split, and on which side.
    parent: Option<(usize, bool)>,
    /// Kept only while `best` is pending, since only a leaf about to split needs its histogram.
    hist: Option<Hist>,
    best: Option<Split>,
}

/// A leaf's histogram, one buffer per feature group, so a task can own the groups it fills.
type Hist = Vec<Vec<Stats>>;

pub(super) type HistWorkers = Workers<Task, Done>;

/// The rows of one histogram pass, shared by its tasks.
pub(super) struct PassInput {
    rows: Vec<u32>,
    /// Gradients in `rows` order, so the histogram loop reads them sequentially.
    ordered: Vec<GradPair>,
    small_find: Option<LeafTotals>,
    large_find: Option<LeafTotals>,
}

/// Buffers of one feature group: the smaller child's to fill, and the parent's to turn into the larger child's.
pub(super) struct GroupBufs {
    g: usize,
    small: Vec<Stats>,
    large: Option<Vec<Stats>>,
}

/// A contiguous run of feature groups and the sampled features in them.
pub(super) struct Task {
    input: Arc<PassInput>,
    groups: Vec<GroupBufs>,
    features: Vec<usize>,
}

pub(super) struct Done {
    groups: Vec<GroupBufs>,
    best_small: Option<Split>,
    best_large: Option<Split>,
}

/// Fills and evaluates one task's groups; runs on whichever thread claimed it.
pub(super) fn process_task(data: &Binned, cfg: &GrowConfig, task: Task) -> Done {
    let Task { input, mut groups, features } = task;
    for gb in &mut groups {
        build_group_hist(data, gb.g, &input.rows, &input.ordered, &mut gb.small);
        if let Some(l) = &mut gb.large {
            for (a, b) in l.iter_mut().zip(&gb.small) {
                *a = a.minus(b);
            }
        }
    }
    let best_small = input.small_find.as_ref().and_then(|t| best_split(data, cfg, &features, &groups, |gb| Some(&gb.small[..]), t));
    let best_large = input.large_find.as_ref().and_then(|t| best_split(data, cfg, &features, &groups, |gb| gb.large.as_deref(), t));
    Done { groups, best_small, best_large }
}

pub(super) struct Learner<'a> {
    data: &'a Binned,
    cfg: GrowConfig,
    workers: Option<&'a HistWorkers>,
    pub indices: Vec<u32>,
    scratch: Vec<u32>,
    pool: Vec<Hist>,
}

impl<'a> Learner<'a> {
    /// `workers` (threads beyond the caller's) may be `None`: the results are the same, only slower.
    pub fn new(data: &'a Binned, cfg: GrowConfig, workers: Option<&'a HistWorkers>) -> Self {
        Learner { data, cfg, workers, indices: Vec::new(), scratch: Vec::new(), pool: Vec::new() }
    }

    /// Grows one tree on the rows of `bag` (all rows when `None`) using only `features` (sorted).
    pub fn grow(&mut self, gh: &[GradPair], bag: Option<&[u32]>, features: &[usize]) -> Result<GrownTree, GbdtError> {
        self.indices.clear();
        match bag {
            Some(b) => self.indices.extend_from_slice(b),
            None => self.indices.extend(0..self.data.n_rows as u32),
        }
        let mut root_stats = Stats::default();
        for &r in &self.indices {
            let p = gh[r as usize];
            root_stats.add(&Stats { g: p.g as f64, h: p.h as f64 });
        }
        let mut leaves = vec![Leaf { rows: 0..self.indices.len(), depth: 0, stats: root_stats, parent: None, hist: None, best: None }];
        let mut nodes: Vec<BinNode> = Vec::new();
        if self.cfg.num_leaves > 1 && self.can_split(&leaves[0]) {
            let mut hist = self.take_hist();
            let find = self.totals(&leaves[0]);
            let (best, _) = self.histogram_pass(gh, features, leaves[0].rows.clone(), &mut hist, find, None)?;
            self.keep_if_splittable(&mut leaves[0], hist, best);
        }
        while leaves.len() < self.cfg.num_leaves {
            let Some(li) = best_leaf(&leaves) else { break };
            self.apply_split(li, &mut leaves, &mut nodes);
            let ri = leaves.len() - 1;
            let parent_hist = leaves[li].hist.take();
            if leaves.len() >= self.cfg.num_leaves {
                self.pool.extend(parent_hist);
                break;
            }
            if let Some(h) = parent_hist {
                self.evaluate_children(gh, features, &mut leaves, li, ri, h)?;
            }
        }
        for leaf in &mut leaves {
            self.pool.extend(leaf.hist.take());
        }
        Ok(GrownTree {
            nodes,
            leaf_stats: leaves.iter().map(|l| l.stats).collect(),
            leaf_rows: leaves.into_iter().map(|l| l.rows).collect(),
        })
    }

    fn can_split(&self, leaf: &Leaf) -> bool {
        let depth_ok = self.cfg.max_depth == 0 || leaf.depth < self.cfg.max_depth;
        depth_ok && leaf.rows.len() >= 2 * self.cfg.min_data_in_leaf as usize && leaf.stats.h >= 2.0 * self.cfg.min_sum_hessian
    }

    fn totals(&self, leaf: &Leaf) -> Option<LeafTotals> {
        LeafTotals::new(leaf.stats, leaf.rows.len(), &self.cfg)
    }

    fn take_hist(&mut self) -> Hist {
        let data = self.data;
        self.pool.pop().unwrap_or_else(|| (0..data.n_groups()).map(|g| vec![Stats::default(); data.group_span(g).len()]).collect())
    }

    fn keep_if_splittable(&mut self, leaf: &mut Leaf, hist: Hist, best: Option<Split>) {
        if best.is_some() {
            leaf.hist = Some(hist);
            leaf.best = best;
        } else {
            self.pool.push(hist);
        }
    }

    /// Splits leaf `li`: it keeps the left rows and index, the right half becomes a new last leaf
    /// (LightGBM's numbering, which keeps every child index above its parent's).
    fn apply_split(&mut self, li: usize, leaves: &mut Vec<Leaf>, nodes: &mut Vec<BinNode>) {
        let Some(split) = leaves[li].best.take() else { return };
        let rows = leaves[li].rows.clone();
        let n_left = self.partition(rows.clone(), &split);
        let node = nodes.len();
        let ri = leaves.len();
        nodes.push(BinNode {
            feature: split.feature,
            bin: split.bin,
            nan_bin: self.data.features[split.feature].nan_bin(),
            default_left: split.default_left,
            gain: split.gain,
            left: !(li as i32),
            right: !(ri as i32),
        });
        if let Some((p, is_left)) = leaves[li].parent {
            if is_left {
                nodes[p].left = node as i32;
            } else {
                nodes[p].right = node as i32;
            }
        }
        let depth = leaves[li].depth + 1;
        let mid = rows.start + n_left;
        let left = &mut leaves[li];
        left.rows = rows.start..mid;
        left.depth = depth;
        left.stats = split.left;
        left.parent = Some((node, true));
        leaves.push(Leaf { rows: mid..rows.end, depth, stats: split.right, parent: Some((node, false)), hist: None, best: None });
    }

    /// Stable in-place partition of the leaf's rows; returns how many went left.
    fn partition(&mut self, rows: Range<usize>, split: &Split) -> usize {
        let group = self.data.group(split.feature / LANES);
        let lane = split.feature % LANES;
        let nan_bin = self.data.features[split.feature].nan_bin();
        self.scratch.clear();
        let mut w = rows.start;
        for i in rows.clone() {
            let r = self.indices[i];
            let b = group[r as usize * LANES + lane] as usize;
            let left = if b == nan_bin { split.default_left } else { b <= split.bin };
            if left {
                self.indices[w] = r;
                w += 1;
            } else {
                self.scratch.push(r);
            }
        }
        self.indices[w..rows.end].copy_from_slice(&self.scratch);
        w - rows.start
    }

    /// Builds the smaller child's histogram, derives the larger one as parent − smaller, and finds both
    /// children's best splits in the same parallel pass.
    fn evaluate_children(
        &mut self,
        gh: &[GradPair],
        features: &[usize],
        leaves: &mut [Leaf],
        li: usize,
        ri: usize,
        mut parent_hist: Hist,
    ) -> Result<(), GbdtError> {
        let (want_l, want_r) = (self.can_split(&leaves[li]), self.can_split(&leaves[ri]));
        if !want_l && !want_r {
            self.pool.push(parent_hist);
            return Ok(());
        }
        let (small, large, want_small, want_large) =
            if leaves[li].rows.len() <= leaves[ri].rows.len() { (li, ri, want_l, want_r) } else { (ri, li, want_r, want_l) };
        let mut small_hist = self.take_hist();
        let small_find = want_small.then(|| self.totals(&leaves[small])).flatten();
        let large_find = want_large.then(|| self.totals(&leaves[large])).flatten();
        let rows = leaves[small].rows.clone();
        let (bs, bl) = self.histogram_pass(gh, features, rows, &mut small_hist, small_find, Some((&mut parent_hist, large_find)))?;
        self.keep_if_splittable(&mut leaves[small], small_hist, bs);
        self.keep_if_splittable(&mut leaves[large], parent_hist, bl);
        Ok(())
    }

    /// Fills `hist` from `rows`, turns `large` (a parent histogram) into parent − `hist`, and returns the
    /// best split of each side whose totals are given. Feature groups are cut into tasks that any thread
    /// may take; per-feature sums never depend on the cut and results merge in task order, so every
    /// thread count gives the same tree.
    fn histogram_pass(
        &mut self,
        gh: &[GradPair],
        features: &[usize],
        rows: Range<usize>,
        hist: &mut Hist,
        small_find: Option<LeafTotals>,
        large: Option<(&mut Hist, Option<LeafTotals>)>,
    ) -> Result<(Option<Split>, Option<Split>), GbdtError> {
        let rows = self.indices[rows].to_vec();
        let ordered = rows.iter().map(|&r| gh[r as usize]).collect();
        let work = (rows.len() + 256) * features.len();
        let (mut large_hist, large_find) = match large {
            Some((h, f)) => (Some(h), f),
            None => (None, None),
        };
        let input = Arc::new(PassInput { rows, ordered, small_find, large_find });
        let workers = self.workers.filter(|_| work >= PARALLEL_MIN_WORK);
        let parts = if workers.is_some() { self.cfg.threads * TASKS_PER_THREAD } else { 1 };
        let mut groups: Vec<usize> = features.iter().map(|f| f / LANES).collect();
        groups.dedup();
        let weights: Vec<usize> = groups.iter().map(|&g| self.data.group_span(g).len()).collect();
        let mut tasks = Vec::new();
        for range in balanced_ranges(&weights, parts) {
            let gs = &groups[range];
            let (Some(&first), Some(&last)) = (gs.first(), gs.last()) else { continue };
            let f_lo = features.partition_point(|&f| f / LANES < first);
            let f_hi = features.partition_point(|&f| f / LANES <= last);
            let bufs = gs
                .iter()
                .map(|&g| GroupBufs {
                    g,
                    small: std::mem::take(&mut hist[g]),
                    large: large_hist.as_mut().map(|l| std::mem::take(&mut l[g])),
                })
                .collect();
            tasks.push(Task { input: Arc::clone(&input), groups: bufs, features: features[f_lo..f_hi].to_vec() });
        }
        drop(input);
        let (data, cfg) = (self.data, &self.cfg);
        let run = |t: Task| process_task(data, cfg, t);
        let results = match workers {
            Some(w) => w.run(tasks, &run)?,
            None => tasks.into_iter().map(run).collect(),
        };
        let mut out = (None, None);
        for done in results {
            for gb in done.groups {
                hist[gb.g] = gb.small;
                if let (Some(l), Some(buf)) = (large_hist.as_mut(), gb.large) {
                    l[gb.g] = buf;
                }
            }
            out.0 = better(out.0, done.best_small);
            out.1 = better(out.1, done.best_large);
        }
        Ok(out)
    }
}

/// Fills the histogram span `h` of feature group `g` from `rows` (gradients in `ordered`, same order).
fn build_group_hist(data: &Binned, g: usize, rows: &[u32], ordered: &[GradPair], h: &mut [Stats]) {
    h.fill(Stats::default());
    let bins = data.group(g);
    let first = g * LANES;
    let lanes = (data.features.len() - first).min(LANES);
    let cut = |k: usize| data.offsets[first + k] - data.offsets[first];
    if lanes == LANES {
        let (h0, rest) = h.split_at_mut(cut(1));
        let (h1, rest) = rest.split_at_mut(cut(2) - cut(1));
        let (h2, h3) = rest.split_at_mut(cut(3) - cut(2));
        for (&r, p) in rows.iter().zip(ordered) {
            let i = r as usize * LANES;
            if let Some(&[b0, b1, b2, b3]) = bins.get(i..i + LANES) {
                let (pg, ph) = (p.g as f64, p.h as f64);
                bump(h0, b0, pg, ph);
                bump(h1, b1, pg, ph);
                bump(h2, b2, pg, ph);
                bump(h3, b3, pg, ph);
            }
        }
    } else {
        for lane in 0..lanes {
            let hl = &mut h[cut(lane)..cut(lane + 1)];
            for (&r, p) in rows.iter().zip(ordered) {
                if let Some(&b) = bins.get(r as usize * LANES + lane) {
                    bump(hl, b, p.g as f64, p.h as f64);
                }
            }
        }
    }
}

#[inline(always)]
fn bump(h: &mut [Stats], b: u8, g: f64, hess: f64) {
    if let Some(e) = h.get_mut(b as usize) {
        e.g += g;
        e.h += hess;
    }
}

/// The higher gain wins; on a tie the earlier candidate (lower feature, lower bin) stays, which keeps
/// the choice independent of how features were grouped across threads.
fn better(a: Option<Split>, b: Option<Split>) -> Option<Split> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.gain > x.gain { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn best_leaf(leaves: &[Leaf]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, l) in leaves.iter().enumerate() {
        if let Some(s) = &l.best
            && best.is_none_or(|(_, g)| s.gain > g)
        {
            best = Some((i, s.gain));
        }
    }
    best.map(|(i, _)| i)
}

fn best_split<'b>(
    data: &Binned,
    cfg: &GrowConfig,
    features: &[usize],
    groups: &'b [GroupBufs],
    hist_of: impl Fn(&'b GroupBufs) -> Option<&'b [Stats]>,
    total: &LeafTotals,
) -> Option<Split> {
    let mut best = None;
    for &f in features {
        if !data.splittable[f] {
            continue;
        }
        let g = f / LANES;
        let Some(h) = groups.iter().find(|gb| gb.g == g).and_then(&hist_of) else { continue };
        let base = data.group_span(g).start;
        let Some(span) = h.get(data.offsets[f] - base..data.offsets[f + 1] - base) else { continue };
        best = better(best, best_split_of_feature(f, &data.features[f], span, total, cfg));
    }
    best
}

/// Scans thresholds once with NaN sent right and, when the leaf has NaN rows, once more with NaN sent
/// left, so each split learns where missing values belong.
fn best_split_of_feature(f: usize, fb: &FeatureBins, hist: &[Stats], leaf: &LeafTotals, cfg: &GrowConfig) -> Option<Split> {
    let n_num = fb.n_numeric;
    let nan = hist.get(n_num).copied().unwrap_or_default();
    let has_nan = nan.h > 0.0;
    // With NaN present, "every number left, NaN right" is a real split, hence one more threshold.
    let last = if has_nan { n_num } else { n_num.saturating_sub(1) };
    let mut best = scan_thresholds(&hist[..last.min(hist.len())], Stats::default(), leaf, cfg).map(|(k, s)| (k, s, false));
    if has_nan {
        let with_nan = scan_thresholds(&hist[..n_num.saturating_sub(1)], nan, leaf, cfg);
        if let Some((k, s)) = with_nan
            && best.is_none_or(|b| s > b.1)
        {
            best = Some((k, s, true));
        }
    }
    let (bin, score, nan_left) = best?;
    let gain = score - cfg.score(&leaf.stats);
    if gain <= cfg.min_gain_to_split.max(1e-12) {
        return None;
    }
    let mut left = if nan_left { nan } else { Stats::default() };
    for s in &hist[..=bin] {
        left.add(s);
    }
    let right = leaf.stats.minus(&left);
    // With no NaN here the direction is free: send future missing values with the majority.
    let default_left = if has_nan { nan_left } else { left.h >= right.h };
    Some(Split { feature: f, bin, default_left, gain, left, right })
}

/// Best "bins `..=k` go left" threshold as (k, summed child scores); `start` is what goes left regardless.
/// The loop avoids counts and branches it can skip: it runs for every bin of every feature of every leaf.
fn scan_thresholds(hist: &[Stats], start: Stats, leaf: &LeafTotals, cfg: &GrowConfig) -> Option<(usize, f64)> {
    let lambda = cfg.lambda_l2;
    let (tg, th) = (leaf.stats.g, leaf.stats.h);
    let (mut lg, mut lh) = (start.g, start.h);
    let mut best: Option<(usize, f64)> = None;
    let mut best_score = f64::NEG_INFINITY;
    for (k, s) in hist.iter().enumerate() {
        lg += s.g;
        lh += s.h;
        let rh = th - lh;
        if lh < leaf.min_child_hessian {
            continue;
        }
        if rh < leaf.min_child_hessian {
            break;
        }
        let rg = tg - lg;
        let score = lg * lg / (lh + lambda) + rg * rg / (rh + lambda);
        if score > best_score {
            best_score = score;
            best = Some((k, score));
        }
    }
    best
}

/// A leaf's sums plus the smallest child hessian allowed, which folds `min_data_in_leaf` (via the
/// leaf's rows per unit of hessian) and `min_sum_hessian` into one comparison.
struct LeafTotals {
    stats: Stats,
    min_child_hessian: f64,
}

impl LeafTotals {
    fn new(stats: Stats, rows: usize, cfg: &GrowConfig) -> Option<Self> {
        // Also rejects NaN sums.
        if stats.h.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return None;
        }
        let rows_per_hessian = rows as f64 / stats.h;
        let for_count = (cfg.min_data_in_leaf as f64 - 0.5) / rows_per_hessian;
        Some(LeafTotals { stats, min_child_hessian: for_count.max(cfg.min_sum_hessian).max(f64::MIN_POSITIVE) })
    }
}
