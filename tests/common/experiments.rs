//! The experiments the tests run, built in one place: the MLP grids that concurrency, crash,
//! worker, fleet, reconnect and Slurm tests share differ only in name, learning rates (one
//! trial each), epochs, widths and a few `[sweep]` keys.

/// An MLP grid on the test data's 80/20 split: Adam, batch 16, one trial per learning rate.
#[derive(Debug, Clone)]
pub struct MlpGrid {
    name: String,
    lrs: Vec<f64>,
    epochs: usize,
    hidden: Vec<usize>,
    dropout: Option<f64>,
    sweep_keys: Vec<(String, String)>,
}

impl MlpGrid {
    /// `name`'s trials: one per learning rate, `epochs` epochs each, hidden layers 256-256.
    pub fn new(name: &str, lrs: &[f64], epochs: usize) -> Self {
        MlpGrid {
            name: name.into(),
            lrs: lrs.to_vec(),
            epochs,
            hidden: vec![256, 256],
            dropout: None,
            sweep_keys: Vec::new(),
        }
    }

    /// `count` trials, learning rates 0.001, 0.002, ...
    pub fn trials(name: &str, count: usize, epochs: usize) -> Self {
        let lrs: Vec<f64> = (1..=count).map(|k| k as f64 / 1000.0).collect();
        MlpGrid::new(name, &lrs, epochs)
    }

    /// Other hidden widths.
    pub fn hidden(mut self, widths: &[usize]) -> Self {
        self.hidden = widths.to_vec();
        self
    }

    /// Dropout after each hidden layer.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = Some(p);
        self
    }

    /// Other epochs.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// A `[sweep]` key (`jobs`, `threads`, `heartbeat_timeout`), its value as TOML.
    pub fn sweep(mut self, key: &str, value: impl ToString) -> Self {
        self.sweep_keys.push((key.into(), value.to_string()));
        self
    }

    /// The experiment file.
    pub fn toml(&self) -> String {
        let mut toml = format!("[sweep]\nname = {:?}\n", self.name);
        for (key, value) in &self.sweep_keys {
            toml.push_str(&format!("{key} = {value}\n"));
        }
        let lrs: Vec<String> = self.lrs.iter().map(|lr| format!("{lr:?}")).collect();
        toml.push_str(&format!(
            "[data]\nsplit = 0.8\n[grid]\narch = \"mlp\"\noptimizer = \"adam\"\nlr = [{}]\n\
             batch_size = 16\nepochs = {}\n",
            lrs.join(", "),
            self.epochs
        ));
        if let Some(p) = self.dropout {
            toml.push_str(&format!("dropout = {p:?}\n"));
        }
        toml.push_str(&format!("[arch.mlp]\nhidden = {:?}\n", self.hidden));
        toml
    }
}
