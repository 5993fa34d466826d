//! Trainable parameters: a named set of candle `Var`s, the only tensors an optimizer touches.

use crate::{ModelError, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// How a new trainable parameter starts.
#[derive(Debug, Clone)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Independent N(0, std²) draws.
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// Independent U(−bound, bound) draws (PyTorch's Kaiming-uniform with a = √5 is
    /// `bound = 1/√fan_in`).
    Uniform {
        /// Half-width of the interval.
        bound: f64,
    },
    /// N(0, std²) redrawn until inside ±`limit` (Houlsby adapter init).
    TruncatedNormal {
        /// Standard deviation before truncation.
        std: f64,
        /// Absolute cut-off.
        limit: f64,
    },
    /// A fixed value everywhere.
    Constant(f64),
    /// A copy of an existing tensor (full fine-tuning starts from the base weights).
    Copy(Tensor),
}

/// Named trainable parameters, kept sorted by name so iteration, saving and optimizer state are
/// deterministic.
#[derive(Debug)]
pub struct ParamStore {
    vars: BTreeMap<String, Var>,
    device: Device,
    rng: ChaCha8Rng,
}

impl ParamStore {
    /// An empty store whose random initialisations draw from `seed`.
    pub fn new(device: &Device, seed: u64) -> Self {
        Self {
            vars: BTreeMap::new(),
            device: device.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Creates parameter `name` of `shape`; fails if the name is taken.
    pub fn create(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        if self.vars.contains_key(name) {
            return Err(ModelError::DuplicateParam {
                name: name.to_string(),
            });
        }
        let n: usize = shape.iter().product();
        let t = match init {
            Init::Zeros => Tensor::zeros(shape, DType::F32, &self.device)?,
            Init::Ones => Tensor::ones(shape, DType::F32, &self.device)?,
            Init::Normal { std } => {
                let v = normal_samples(&mut self.rng, n, std);
                Tensor::from_vec(v, shape, &self.device)?
            }
            Init::Uniform { bound } => {
                use rand::Rng;
                let v: Vec<f32> = (0..n)
                    .map(|_| ((self.rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                Tensor::from_vec(v, shape, &self.device)?
            }
            Init::TruncatedNormal { std, limit } => {
                let mut v = Vec::with_capacity(n);
                while v.len() < n {
                    let draws = normal_samples(&mut self.rng, n - v.len(), std);
                    v.extend(draws.into_iter().filter(|x| (*x as f64).abs() <= limit));
                }
                Tensor::from_vec(v, shape, &self.device)?
            }
            Init::Constant(c) => (Tensor::ones(shape, DType::F32, &self.device)? * c)?,
            Init::Copy(src) => {
                if src.dims() != shape {
                    return Err(ModelError::ShapeMismatch {
                        name: name.to_string(),
                        expected: shape.to_vec(),
                        actual: src.dims().to_vec(),
                    });
                }
                // A deep copy: the base tensor must never alias trainable storage.
                src.to_dtype(DType::F32)?.copy()?
            }
        };
        let var = Var::from_tensor(&t)?;
        self.vars.insert(name.to_string(), var.clone());
        Ok(var)
    }

    /// Registers an existing variable under `name` (a parameter shared by several deltas).
    pub fn insert(&mut self, name: &str, var: Var) -> Result<()> {
        if self.vars.contains_key(name) {
            return Err(ModelError::DuplicateParam {
                name: name.to_string(),
            });
        }
        self.vars.insert(name.to_string(), var);
        Ok(())
    }

    /// The parameter `name`.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// All parameters, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// Snapshot of every parameter's current value (detached copies).
    pub fn to_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect()
    }

    /// Overwrites parameters from `tensors`, which must hold exactly this store's names and shapes.
    pub fn assign(&self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        for name in tensors.keys() {
            if !self.vars.contains_key(name) {
                return Err(ModelError::BadInput(format!(
                    "saved state has parameter `{name}` this configuration does not create"
                )));
            }
        }
        for (name, var) in &self.vars {
            let t = tensors
                .get(name)
                .ok_or_else(|| ModelError::MissingTensor { name: name.clone() })?;
            if t.dims() != var.dims() {
                return Err(ModelError::ShapeMismatch {
                    name: name.clone(),
                    expected: var.dims().to_vec(),
                    actual: t.dims().to_vec(),
                });
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }
}

/// `n` draws of N(0, std²) by Box–Muller from a seeded ChaCha stream, so initialisation is
/// identical on every platform.
fn normal_samples(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    use rand::Rng;
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so ln(u1) is finite.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = 2.0 * std::f64::consts::PI * u2;
        out.push((r * theta.cos()) as f32);
        out.push((r * theta.sin()) as f32);
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_init_has_the_requested_spread_and_is_seeded() -> Result<()> {
        let mut a = ParamStore::new(&Device::Cpu, 3);
        let w = a.create("w", &[100, 100], Init::Normal { std: 0.02 })?;
        let v = w.flatten_all()?.to_vec1::<f32>()?;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        // 10k draws: the sample std is within 3% of 0.02 and the mean within 4 standard errors.
        assert!((sd - 0.02).abs() < 0.0006, "sd {sd}");
        assert!(mean.abs() < 4.0 * 0.02 / 100.0, "mean {mean}");
        let mut b = ParamStore::new(&Device::Cpu, 3);
        let w2 = b.create("w", &[100, 100], Init::Normal { std: 0.02 })?;
        assert_eq!(v, w2.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn copies_do_not_alias_and_names_are_unique() -> Result<()> {
        let base = Tensor::new(&[1f32, 2.], &Device::Cpu)?;
        let mut s = ParamStore::new(&Device::Cpu, 0);
        let v = s.create("b", &[2], Init::Copy(base.clone()))?;
        v.set(&Tensor::new(&[5f32, 6.], &Device::Cpu)?)?;
        assert_eq!(base.to_vec1::<f32>()?, vec![1., 2.]);
        assert!(matches!(
            s.create("b", &[2], Init::Zeros),
            Err(ModelError::DuplicateParam { .. })
        ));
        let bad = BTreeMap::from([("b".to_string(), Tensor::zeros(3, DType::F32, &Device::Cpu)?)]);
        assert!(matches!(s.assign(&bad), Err(ModelError::ShapeMismatch { .. })));
        Ok(())
    }
}
