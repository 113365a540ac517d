//! Recent readings of one machine, as a prediction request sends them or the machine's own latest rows give them.
use super::error::MlError;
use super::shared::features::{FeatureSpec, features_for_last_row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Consecutive rows of the machine's current life, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Recent {
    pub timestamps: Vec<f64>,
    pub sensors: BTreeMap<String, Vec<f64>>,
    /// Hours since the current life began, at the last row; only models trained with time-in-life need it.
    pub time_in_life_h: Option<f64>,
}

impl Recent {
    /// The columns a feature spec needs, in its order; a missing sensor is an error, never zeros.
    pub fn columns_for(&self, names: &[String]) -> Result<Vec<Vec<f64>>, MlError> {
        names
            .iter()
            .map(|n| {
                self.sensors.get(n).cloned().ok_or_else(|| {
                    MlError::Readings(format!("sensor {n:?} is missing from the readings (the model needs: {})", names.join(", ")))
                })
            })
            .collect()
    }

    pub fn last_row_features(&self, spec: &FeatureSpec) -> Result<Vec<f32>, MlError> {
        self.features_back(spec, 0)
    }

    /// The features of the reading `back` readings before the last, from the readings up to it.
    pub fn features_back(&self, spec: &FeatureSpec, back: usize) -> Result<Vec<f32>, MlError> {
        let mut cols = self.columns_for(&spec.sensors)?;
        for c in &mut cols {
            c.truncate(c.len().saturating_sub(back));
        }
        let til = if spec.time_in_life {
            Some(
                self.time_in_life_h
                    .ok_or_else(|| MlError::Readings("this model needs time_in_life_h (hours since the current life began)".into()))?,
            )
        } else {
            None
        };
        Ok(features_for_last_row(spec, &cols, til)?)
    }

    pub fn last_timestamp(&self) -> Option<f64> {
        self.timestamps.last().copied()
    }
}
