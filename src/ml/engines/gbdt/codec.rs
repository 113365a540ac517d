//! Compact little-endian binary form of a [`Model`]: varint indices and raw f32 thresholds and leaves,
//! about a third of the JSON size.

use super::model::{Model, ModelRepr, Tree};
use super::{GbdtError, Objective};

const MAGIC: &[u8; 4] = b"MWGB";
const VERSION: u8 = 1;

impl Model {
    pub fn to_bytes(&self) -> Vec<u8> {
        let r = &self.repr;
        let mut w = Vec::with_capacity(64 + r.trees.iter().map(|t| t.n_splits() * 8 + t.n_leaves() * 4).sum::<usize>());
        w.extend_from_slice(MAGIC);
        w.push(VERSION);
        w.push(match r.objective {
            Objective::Binary => 0,
            Objective::Regression => 1,
        });
        put_varint(&mut w, r.n_features as u64);
        w.extend_from_slice(&r.init_score.to_le_bytes());
        for (&g, &s) in r.importance_gain.iter().zip(&r.importance_split) {
            w.extend_from_slice(&g.to_le_bytes());
            put_varint(&mut w, s as u64);
        }
        put_varint(&mut w, r.trees.len() as u64);
        for t in &r.trees {
            put_tree(&mut w, t);
        }
        w
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, GbdtError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(decode("not a millwright GBDT model"));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(decode(&format!("unsupported format version {version}")));
        }
        let objective = match r.u8()? {
            0 => Objective::Binary,
            1 => Objective::Regression,
            o => return Err(decode(&format!("unknown objective {o}"))),
        };
        let n_features = r.len_varint()?;
        let init_score = r.f32()?;
        let mut importance_gain = Vec::with_capacity(n_features.min(bytes.len()));
        let mut importance_split = Vec::with_capacity(n_features.min(bytes.len()));
        for _ in 0..n_features {
            importance_gain.push(r.f64()?);
            importance_split.push(u32::try_from(r.varint()?).map_err(|_| decode("split count overflow"))?);
        }
        let n_trees = r.len_varint()?;
        let mut trees = Vec::with_capacity(n_trees.min(bytes.len()));
        for _ in 0..n_trees {
            trees.push(get_tree(&mut r)?);
        }
        if r.pos != bytes.len() {
            return Err(decode("trailing bytes"));
        }
        Model::try_from(ModelRepr { objective, n_features, init_score, trees, importance_gain, importance_split })
    }
}

fn put_tree(w: &mut Vec<u8>, t: &Tree) {
    put_varint(w, t.n_splits() as u64);
    for i in 0..t.n_splits() {
        // The default direction rides in the feature's low bit: one byte per node instead of two.
        put_varint(w, ((t.split_feature[i] as u64) << 1) | t.default_left[i] as u64);
        w.extend_from_slice(&t.threshold[i].to_le_bytes());
        put_varint(w, zigzag(t.left[i]));
        put_varint(w, zigzag(t.right[i]));
    }
    for v in &t.leaf_value {
        w.extend_from_slice(&v.to_le_bytes());
    }
}

fn get_tree(r: &mut Reader) -> Result<Tree, GbdtError> {
    let n = r.len_varint()?;
    let cap = n.min(r.buf.len());
    let mut t = Tree {
        split_feature: Vec::with_capacity(cap),
        threshold: Vec::with_capacity(cap),
        default_left: Vec::with_capacity(cap),
        left: Vec::with_capacity(cap),
        right: Vec::with_capacity(cap),
        leaf_value: Vec::with_capacity(cap + 1),
    };
    for _ in 0..n {
        let fd = r.varint()?;
        t.split_feature.push(u32::try_from(fd >> 1).map_err(|_| decode("feature index overflow"))?);
        t.default_left.push(fd & 1 == 1);
        t.threshold.push(r.f32()?);
        t.left.push(unzigzag(r.varint()?)?);
        t.right.push(unzigzag(r.varint()?)?);
    }
    for _ in 0..=n {
        t.leaf_value.push(r.f32()?);
    }
    Ok(t)
}

fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn unzigzag(u: u64) -> Result<i32, GbdtError> {
    let u = u32::try_from(u).map_err(|_| decode("child index overflow"))?;
    Ok(((u >> 1) as i32) ^ -((u & 1) as i32))
}

fn put_varint(w: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        w.push((v as u8) | 0x80);
        v >>= 7;
    }
    w.push(v as u8);
}

fn decode(msg: &str) -> GbdtError {
    GbdtError::InvalidModel(msg.to_string())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], GbdtError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| decode("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, GbdtError> {
        Ok(self.take(1)?[0])
    }

    fn f32(&mut self) -> Result<f32, GbdtError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(f32::from_le_bytes(a))
    }

    fn f64(&mut self) -> Result<f64, GbdtError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, GbdtError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(decode("varint too long"))
    }

    /// A count that must fit in what is left of the buffer, so a forged length cannot force a huge allocation.
    fn len_varint(&mut self) -> Result<usize, GbdtError> {
        let v = self.varint()?;
        usize::try_from(v).ok().filter(|&n| n <= self.buf.len()).ok_or_else(|| decode("length out of range"))
    }
}
