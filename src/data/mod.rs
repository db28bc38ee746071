//! The data set: locating the IDX files, loading them, seeded train/validation splits and batches.

mod augment;
mod idx;

pub use augment::Augmentation;
pub use idx::{IdxArray, encode_idx, parse_idx, read_idx};

use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's class names, by label.
pub const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Number of classes the models predict.
pub const NUM_CLASSES: usize = 10;

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Finds the data directory: the explicit one (`--data` or `[data] dir`), then `SWEEP_DATA`, then
/// the Debian package's directory, then the user cache (`$XDG_CACHE_HOME` or `~/.cache`,
/// `sweep/fashion-mnist`).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return check_dir(dir).map(|_| dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("SWEEP_DATA").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return check_dir(&dir)
            .map(|_| dir)
            .map_err(|e| Error::Data(format!("SWEEP_DATA points at an unusable directory: {e}")));
    }
    let mut tried = vec![PathBuf::from(DEBIAN_DIR)];
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(cache) = cache {
        tried.push(cache.join("sweep").join("fashion-mnist"));
    }
    for dir in &tried {
        if check_dir(dir).is_ok() {
            return Ok(dir.clone());
        }
    }
    Err(Error::Data(format!(
        "Fashion-MNIST not found (looked in {}). Install it with \
         `sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist`, \
         or point --data / SWEEP_DATA at a directory holding {}(.gz)",
        tried
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        FILES.join(", ")
    )))
}

fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_owned()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

fn check_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::Data(format!(
            "{} is not a directory; install the data set with \
             `apt-get install -y dataset-fashion-mnist` or point --data at the directory holding \
             {}(.gz)",
            dir.display(),
            FILES.join(", ")
        )));
    }
    let missing: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|stem| find_file(dir, stem).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Data(format!(
            "{} lacks {} (gzipped or raw IDX files); install the data set with \
             `apt-get install -y dataset-fashion-mnist` or point --data at another directory",
            dir.display(),
            missing.join(", ")
        )))
    }
}

/// Images and labels of one part of the data set, pixels kept as bytes.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// `len * rows * cols` pixels, row-major.
    pub pixels: Vec<u8>,
    /// One label per image, each below [`NUM_CLASSES`].
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image.
    pub fn image_size(&self) -> usize {
        self.rows * self.cols
    }

    fn load(dir: &Path, images: &str, labels: &str) -> Result<Self> {
        let image_path = find_file(dir, images).expect("checked by locate");
        let label_path = find_file(dir, labels).expect("checked by locate");
        let image_array = read_idx(&image_path, 3)?;
        let label_array = read_idx(&label_path, 1)?;
        let (n, rows, cols) = (
            image_array.dims[0],
            image_array.dims[1],
            image_array.dims[2],
        );
        if (rows, cols) != (28, 28) {
            return Err(Error::Data(format!(
                "{}: images are {rows}x{cols}; the models expect 28x28",
                image_path.display()
            )));
        }
        if label_array.dims[0] != n {
            return Err(Error::Data(format!(
                "{} holds {n} images but {} holds {} labels",
                image_path.display(),
                label_path.display(),
                label_array.dims[0]
            )));
        }
        if let Some(bad) = label_array
            .values
            .iter()
            .find(|&&l| l as usize >= NUM_CLASSES)
        {
            return Err(Error::Data(format!(
                "{}: label {bad} is outside 0..{NUM_CLASSES}",
                label_path.display()
            )));
        }
        Ok(ImageSet {
            pixels: image_array.values,
            labels: label_array.values,
            rows,
            cols,
        })
    }

    /// The first `n` images (all when `n` is larger).
    pub fn truncated(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            pixels: idx::on_huge_pages(&self.pixels[..n * self.image_size()]),
            labels: self.labels[..n].to_vec(),
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// The training and test sets of an IDX data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Directory the files came from.
    pub dir: PathBuf,
    /// The 60,000 training images (train + validation).
    pub train: ImageSet,
    /// The 10,000 test images.
    pub test: ImageSet,
}

impl Dataset {
    /// Loads all four files from `dir` (see [`locate`]).
    pub fn load(dir: &Path) -> Result<Self> {
        check_dir(dir)?;
        let (train, test) = rayon::join(
            || ImageSet::load(dir, FILES[0], FILES[1]),
            || ImageSet::load(dir, FILES[2], FILES[3]),
        );
        Ok(Dataset {
            dir: dir.to_path_buf(),
            train: train?,
            test: test?,
        })
    }
}

/// How bytes become model inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelScale {
    /// Subtracted after scaling to [0, 1].
    pub mean: f32,
    /// Divides after subtracting the mean.
    pub std: f32,
}

impl PixelScale {
    /// Plain [0, 1] scaling, as torchvision's `ToTensor`.
    pub const UNIT: PixelScale = PixelScale {
        mean: 0.0,
        std: 1.0,
    };

    /// Standardisation with the mean and deviation of `set`'s pixels.
    pub fn standardizing(set: &ImageSet, indices: &[u32]) -> PixelScale {
        let size = set.image_size();
        let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0f64);
        for &i in indices {
            for &p in &set.pixels[i as usize * size..(i as usize + 1) * size] {
                let v = p as f64 / 255.0;
                sum += v;
                sum_sq += v * v;
                n += 1.0;
            }
        }
        let mean = sum / n.max(1.0);
        let std = (sum_sq / n.max(1.0) - mean * mean).max(1e-12).sqrt();
        PixelScale {
            mean: mean as f32,
            std: std as f32,
        }
    }

    /// The 256-entry lookup table from byte to input value.
    pub fn table(&self) -> [f32; 256] {
        std::array::from_fn(|b| (b as f32 / 255.0 - self.mean) / self.std)
    }
}

/// A trial's seeded partition of the training set.
#[derive(Debug, Clone)]
pub struct Split {
    /// Indices into the training set used for training.
    pub train: Vec<u32>,
    /// Indices used for validation.
    pub val: Vec<u32>,
}

impl Split {
    /// Shuffles `0..n` with the trial seed and cuts it at `floor(n * fraction)`.
    pub fn new(n: usize, fraction: f64, seed: u64) -> Result<Split> {
        let mut order: Vec<u32> = (0..n as u32).collect();
        Rng::for_stream(seed, Stream::Split).shuffle(&mut order);
        let cut = (n as f64 * fraction).floor() as usize;
        if cut == 0 || cut == n {
            return Err(Error::Data(format!(
                "a split of {fraction} over {n} images leaves an empty training or validation \
                 set; raise data.limit or choose a split nearer 0.5"
            )));
        }
        let val = order.split_off(cut);
        Ok(Split { train: order, val })
    }
}

/// Asks the CPU to start loading `bytes` into its caches.
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch only hints at an address, here one inside `bytes`; it never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Gathers the images at `indices` into a flat input buffer and their labels.
pub fn gather(set: &ImageSet, indices: &[u32], table: &[f32; 256]) -> (Vec<f32>, Vec<i64>) {
    let size = set.image_size();
    // A filled buffer and zipped slices leave the loop without bounds or capacity checks: a
    // third faster than extending, and this runs for every batch (during the previous one's
    // backward pass, on a thread that pass leaves idle between its operations).
    // The images lie at random in memory that training keeps evicting from the caches, so each
    // is asked for two images ahead.
    let mut pixels = vec![0.0; indices.len() * size];
    for &i in indices.iter().take(2) {
        prefetch(&set.pixels[i as usize * size..][..size]);
    }
    for (k, (image, &i)) in pixels.chunks_exact_mut(size).zip(indices).enumerate() {
        if let Some(&ahead) = indices.get(k + 2) {
            prefetch(&set.pixels[ahead as usize * size..][..size]);
        }
        let i = i as usize;
        for (value, &byte) in image.iter_mut().zip(&set.pixels[i * size..(i + 1) * size]) {
            *value = table[byte as usize];
        }
    }
    let labels = indices
        .iter()
        .map(|&i| set.labels[i as usize] as i64)
        .collect();
    (pixels, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_the_same_in_every_version() {
        // Stored trials, resumes and benches/optuna_search.py (which re-implements it to give
        // Optuna the same validation images) all depend on these exact indices.
        let a = Split::new(12, 0.75, 1).unwrap();
        assert_eq!(a.train, [6, 8, 2, 11, 10, 5, 0, 7, 1]);
        assert_eq!(a.val, [4, 3, 9]);
        assert_eq!(Split::new(12, 0.75, 7).unwrap().val, [4, 10, 5]);
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let a = Split::new(100, 0.8, 1).unwrap();
        let b = Split::new(100, 0.8, 1).unwrap();
        let c = Split::new(100, 0.8, 2).unwrap();
        assert_eq!((a.train.len(), a.val.len()), (80, 20));
        assert_eq!(a.train, b.train);
        assert_ne!(a.train, c.train);
        let mut all: Vec<u32> = a.train.iter().chain(&a.val).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert!(Split::new(3, 0.1, 0).is_err());
    }

    #[test]
    fn unit_scale_maps_bytes_to_unit_interval() {
        let t = PixelScale::UNIT.table();
        assert_eq!(t[0], 0.0);
        assert_eq!(t[255], 1.0);
    }
}
