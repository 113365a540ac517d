//! The trained model: flat trees on raw feature values, so prediction needs neither bins nor training data.

use serde::{Deserialize, Serialize};

use super::{GbdtError, Matrix, Objective};

/// One regression tree in flat arrays. Internal node `i` sends a row to `left[i]` when its feature value
/// is `<= threshold[i]` (NaN follows `default_left[i]`); a negative child `c` is leaf `!c`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub split_feature: Vec<u32>,
    pub threshold: Vec<f32>,
    pub default_left: Vec<bool>,
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    pub leaf_value: Vec<f32>,
}

impl Tree {
    pub fn n_leaves(&self) -> usize {
        self.leaf_value.len()
    }

    pub fn n_splits(&self) -> usize {
        self.split_feature.len()
    }

    /// Leaf reached by a row whose feature `f` is `value(f)`.
    pub fn leaf_index(&self, value: impl Fn(usize) -> f32) -> usize {
        if self.split_feature.is_empty() {
            return 0;
        }
        let mut node = 0usize;
        loop {
            let v = value(self.split_feature[node] as usize);
            let go_left = if v.is_nan() { self.default_left[node] } else { v <= self.threshold[node] };
            let child = if go_left { self.left[node] } else { self.right[node] };
            if child < 0 {
                return !child as usize;
            }
            node = child as usize;
        }
    }

    pub fn predict_row(&self, row: &[f32]) -> f64 {
        let leaf = self.leaf_index(|f| row.get(f).copied().unwrap_or(f32::NAN));
        self.leaf_value.get(leaf).copied().unwrap_or(0.0) as f64
    }

    pub fn predict_in(&self, x: &Matrix, r: usize) -> f64 {
        let leaf = self.leaf_index(|f| x.value(r, f));
        self.leaf_value.get(leaf).copied().unwrap_or(0.0) as f64
    }

    /// Checks the invariants prediction relies on: every index in range and children strictly after
    /// their parent, which rules out cycles in a tampered model file.
    pub(super) fn validate(&self, n_features: usize) -> Result<(), String> {
        let n = self.split_feature.len();
        if self.threshold.len() != n || self.default_left.len() != n || self.left.len() != n || self.right.len() != n {
            return Err("tree arrays differ in length".into());
        }
        if self.leaf_value.len() != n + 1 {
            return Err(format!("tree with {n} splits has {} leaves", self.leaf_value.len()));
        }
        for i in 0..n {
            if self.split_feature[i] as usize >= n_features {
                return Err(format!("split on feature {} of {n_features}", self.split_feature[i]));
            }
            if self.threshold[i].is_nan() {
                return Err("NaN threshold".into());
            }
            for c in [self.left[i], self.right[i]] {
                let ok = if c < 0 { (!c as usize) <= n } else { (c as usize) > i && (c as usize) < n };
                if !ok {
                    return Err(format!("node {i} has child {c} out of range"));
                }
            }
        }
        if self.leaf_value.iter().any(|v| !v.is_finite()) {
            return Err("non-finite leaf value".into());
        }
        Ok(())
    }
}

/// Fields as stored; deserialisation goes through [`Model::try_from`] so a bad file is an error, not a panic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ModelRepr {
    pub objective: Objective,
    pub n_features: usize,
    /// f32 like every stored number, so a JSON round trip (which may perturb an f64 by an ulp) is exact.
    pub init_score: f32,
    pub trees: Vec<Tree>,
    pub importance_gain: Vec<f64>,
    pub importance_split: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ModelRepr", into = "ModelRepr")]
pub struct Model {
    pub(super) repr: ModelRepr,
}

impl TryFrom<ModelRepr> for Model {
    type Error = GbdtError;

    fn try_from(repr: ModelRepr) -> Result<Self, GbdtError> {
        let bad = |m: String| GbdtError::InvalidModel(m);
        if !repr.init_score.is_finite() {
            return Err(bad("non-finite initial score".into()));
        }
        if repr.importance_gain.len() != repr.n_features || repr.importance_split.len() != repr.n_features {
            return Err(bad("importance length differs from the feature count".into()));
        }
        for (i, t) in repr.trees.iter().enumerate() {
            t.validate(repr.n_features).map_err(|e| bad(format!("tree {i}: {e}")))?;
        }
        Ok(Model { repr })
    }
}

impl From<Model> for ModelRepr {
    fn from(m: Model) -> Self {
        m.repr
    }
}

impl Model {
    pub fn objective(&self) -> Objective {
        self.repr.objective
    }

    pub fn n_features(&self) -> usize {
        self.repr.n_features
    }

    pub fn n_trees(&self) -> usize {
        self.repr.trees.len()
    }

    pub fn trees(&self) -> &[Tree] {
        &self.repr.trees
    }

    pub fn init_score(&self) -> f64 {
        self.repr.init_score as f64
    }

    /// Raw score (log-odds for Binary). Missing trailing features count as NaN.
    pub fn predict_raw(&self, row: &[f32]) -> f64 {
        self.repr.trees.iter().fold(self.repr.init_score as f64, |s, t| s + t.predict_row(row))
    }

    /// Probability of class 1 for Binary, the value for Regression.
    pub fn predict(&self, row: &[f32]) -> f64 {
        self.transform(self.predict_raw(row))
    }

    pub fn predict_matrix(&self, x: &Matrix) -> Vec<f64> {
        (0..x.n_rows).map(|r| self.transform(self.predict_raw_in(x, r))).collect()
    }

    pub fn predict_raw_matrix(&self, x: &Matrix) -> Vec<f64> {
        (0..x.n_rows).map(|r| self.predict_raw_in(x, r)).collect()
    }

    fn predict_raw_in(&self, x: &Matrix, r: usize) -> f64 {
        self.repr.trees.iter().fold(self.repr.init_score as f64, |s, t| s + t.predict_in(x, r))
    }

    fn transform(&self, raw: f64) -> f64 {
        match self.repr.objective {
            Objective::Binary => sigmoid(raw),
            Objective::Regression => raw,
        }
    }

    /// Total loss reduction contributed by each feature's splits.
    pub fn feature_importance_gain(&self) -> Vec<f64> {
        self.repr.importance_gain.clone()
    }

    /// Number of splits on each feature.
    pub fn feature_importance_split(&self) -> Vec<u32> {
        self.repr.importance_split.clone()
    }
}

pub(super) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
