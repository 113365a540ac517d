//! The little dense linear algebra the detectors need: Cholesky on a packed lower triangle and a
//! cyclic Jacobi eigen-solver. Sizes are "number of sensors", so O(p³) is fine.

#[inline]
fn packed(i: usize, j: usize) -> usize {
    i * (i + 1) / 2 + j
}

/// Cholesky factor of a symmetric p×p row-major matrix, as a packed lower triangle
/// (row i holds columns 0..=i). `None` if the matrix is not (numerically) positive definite.
pub fn cholesky(a: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; p * (p + 1) / 2];
    for i in 0..p {
        for j in 0..=i {
            let mut sum = a[i * p + j];
            for k in 0..j {
                sum -= l[packed(i, k)] * l[packed(j, k)];
            }
            if i == j {
                if !sum.is_finite() || sum <= 0.0 {
                    return None;
                }
                l[packed(i, i)] = sum.sqrt();
            } else {
                l[packed(i, j)] = sum / l[packed(j, j)];
            }
        }
    }
    Some(l)
}

/// Solves L y = b.
pub fn forward(l: &[f64], b: &[f64]) -> Vec<f64> {
    let p = b.len();
    let mut y = vec![0.0; p];
    for i in 0..p {
        let mut s = b[i];
        for k in 0..i {
            s -= l[packed(i, k)] * y[k];
        }
        y[i] = s / l[packed(i, i)];
    }
    y
}

/// Solves Lᵀ x = y.
pub fn backward(l: &[f64], y: &[f64]) -> Vec<f64> {
    let p = y.len();
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let mut s = y[i];
        for k in i + 1..p {
            s -= l[packed(k, i)] * x[k];
        }
        x[i] = s / l[packed(i, i)];
    }
    x
}

/// Eigen-decomposition of a symmetric p×p row-major matrix. Returns eigenvalues in descending
/// order and the matching eigenvectors as rows of a p×p row-major matrix.
pub fn symmetric_eigen(a: &[f64], p: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; p * p];
    for i in 0..p {
        v[i * p + i] = 1.0;
    }
    let scale: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..50 {
        let off: f64 = (0..p).flat_map(|i| (0..p).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| m[i * p + j].powi(2)).sum();
        if off <= 1e-22 * scale {
            break;
        }
        for i in 0..p {
            for j in i + 1..p {
                rotate(&mut m, &mut v, p, i, j);
            }
        }
    }
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&x, &y| m[y * p + y].total_cmp(&m[x * p + x]));
    let values = order.iter().map(|&k| m[k * p + k]).collect();
    // Columns of the accumulated rotation are the eigenvectors; return them as rows.
    let mut vectors = vec![0.0; p * p];
    for (r, &k) in order.iter().enumerate() {
        for i in 0..p {
            vectors[r * p + i] = v[i * p + k];
        }
    }
    (values, vectors)
}

/// One Jacobi rotation zeroing m[i][j].
fn rotate(m: &mut [f64], v: &mut [f64], p: usize, i: usize, j: usize) {
    let aij = m[i * p + j];
    if aij.abs() < 1e-300 {
        return;
    }
    let theta = (m[j * p + j] - m[i * p + i]) / (2.0 * aij);
    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
    let t = if theta == 0.0 { 1.0 } else { t };
    let c = 1.0 / (t * t + 1.0).sqrt();
    let s = t * c;
    for k in 0..p {
        let mki = m[k * p + i];
        let mkj = m[k * p + j];
        m[k * p + i] = c * mki - s * mkj;
        m[k * p + j] = s * mki + c * mkj;
    }
    for k in 0..p {
        let mik = m[i * p + k];
        let mjk = m[j * p + k];
        m[i * p + k] = c * mik - s * mjk;
        m[j * p + k] = s * mik + c * mjk;
    }
    for k in 0..p {
        let vki = v[k * p + i];
        let vkj = v[k * p + j];
        v[k * p + i] = c * vki - s * vkj;
        v[k * p + j] = s * vki + c * vkj;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let l = cholesky(&a, 3).unwrap();
        let b = [1.0, 2.0, 3.0];
        let x = backward(&l, &forward(&l, &b));
        for i in 0..3 {
            let ax: f64 = (0..3).map(|j| a[i * 3 + j] * x[j]).sum();
            assert!((ax - b[i]).abs() < 1e-12);
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        assert!(cholesky(&[f64::NAN], 1).is_none());
    }

    #[test]
    fn eigen_reconstructs() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let (vals, vecs) = symmetric_eigen(&a, 3);
        assert!(vals[0] >= vals[1] && vals[1] >= vals[2]);
        for r in 0..3 {
            let v = &vecs[r * 3..r * 3 + 3];
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i * 3 + j] * v[j]).sum();
                assert!((av - vals[r] * v[i]).abs() < 1e-9);
            }
        }
    }
}
