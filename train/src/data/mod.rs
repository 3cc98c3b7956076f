//! Image classification datasets: IDX files (MNIST, Fashion-MNIST; raw or gzip) and CIFAR-10's
//! binary batches, held as bytes; batches normalized per channel, with optional random crop
//! (zero padding) and horizontal flip drawn from a seeded stream.

pub mod inflate;

use std::path::{Path, PathBuf};

use ir::Tensor;

use crate::error::{file_err, Result, TrainError};
use crate::rng::Rng;

/// Images as bytes, [N, C, H, W] row-major, and their labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Per-channel mean and standard deviation of the pixels in [0, 1].
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut sum = vec![0f64; self.channels];
        let mut sq = vec![0f64; self.channels];
        for img in self.images.chunks(self.image_size()) {
            for c in 0..self.channels {
                for &p in &img[c * plane..(c + 1) * plane] {
                    let v = p as f64 / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
        }
        let n = (self.len() * plane).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sq.iter().zip(&sum).map(|(q, s)| ((q / n - (s / n) * (s / n)).max(1e-12).sqrt()) as f32).collect();
        (mean, std)
    }

    /// The images at `indices`, split off as their own dataset.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let size = self.image_size();
        let mut images = Vec::with_capacity(indices.len() * size);
        for &i in indices {
            images.extend_from_slice(&self.images[i * size..(i + 1) * size]);
        }
        Dataset { images, labels: indices.iter().map(|&i| self.labels[i]).collect(), ..*self }
    }

    /// The batch of `indices`: images [B, C, H, W] as f32, normalized with `norm` (mean, std
    /// per channel), augmented when `augment` is given (drawing from `rng`), and labels [B].
    pub fn batch(
        &self,
        indices: &[usize],
        norm: &(Vec<f32>, Vec<f32>),
        augment: Option<&Augment>,
        rng: &mut Rng,
    ) -> Result<(Tensor, Tensor)> {
        let (c, h, w) = (self.channels, self.height, self.width);
        let mut x = Vec::with_capacity(indices.len() * c * h * w);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(TrainError::Invalid(format!("image {i} is out of range of a dataset of {}", self.len())));
            }
            let img = &self.images[i * c * h * w..(i + 1) * c * h * w];
            let (dy, dx, flip) = match augment {
                Some(a) => {
                    let p = a.crop_padding as i64;
                    let dy = rng.below(2 * a.crop_padding + 1) as i64 - p;
                    let dx = rng.below(2 * a.crop_padding + 1) as i64 - p;
                    (dy, dx, a.flip && rng.uniform() < 0.5)
                }
                None => (0, 0, false),
            };
            for ch in 0..c {
                let (m, s) = (norm.0[ch], norm.1[ch]);
                for y in 0..h as i64 {
                    for xx in 0..w as i64 {
                        let sx = if flip { w as i64 - 1 - xx } else { xx } + dx;
                        let sy = y + dy;
                        let p = if sy < 0 || sy >= h as i64 || sx < 0 || sx >= w as i64 {
                            0
                        } else {
                            img[ch * h * w + sy as usize * w + sx as usize]
                        };
                        x.push((p as f32 / 255.0 - m) / s);
                    }
                }
            }
            labels.push(self.labels[i] as i64);
        }
        Ok((Tensor::f32(vec![indices.len(), c, h, w], x)?, Tensor::i64(vec![indices.len()], labels)?))
    }
}

/// Training-time augmentation: a random crop of the image padded by `crop_padding` zeros on
/// each side (a shift of up to that many pixels), and a horizontal flip with probability 1/2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    pub crop_padding: usize,
    pub flip: bool,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    if inflate::is_gzip(&bytes) {
        inflate::gunzip(&bytes).map_err(|e| file_err(path, e))
    } else {
        Ok(bytes)
    }
}

/// Reads an IDX file of unsigned bytes: its dimensions and data.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read(path)?;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(file_err(path, "not an IDX file (bad magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(file_err(path, format!("IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)", bytes[2])));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(file_err(path, "a truncated IDX header"));
    }
    let dims: Vec<usize> =
        (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize).collect();
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| file_err(path, "IDX dimensions overflow"))?;
    if bytes.len() - header != count {
        return Err(file_err(path, format!("IDX dimensions {dims:?} need {count} bytes of data, the file has {}", bytes.len() - header)));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// An IDX image file ([N, H, W]) and its label file ([N]) as a one-channel dataset.
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset> {
    let (dims, pixels) = read_idx(images)?;
    if dims.len() != 3 {
        return Err(file_err(images, format!("IDX images must have 3 dimensions, have {dims:?}")));
    }
    let (ldims, labels_data) = read_idx(labels)?;
    if ldims != [dims[0]] {
        return Err(file_err(labels, format!("{} labels for {} images", ldims.iter().product::<usize>(), dims[0])));
    }
    let classes = labels_data.iter().copied().max().map_or(0, |m| m as usize + 1);
    Ok(Dataset { images: pixels, labels: labels_data, channels: 1, height: dims[1], width: dims[2], classes })
}

/// Where Debian's `dataset-fashion-mnist` package puts the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The file of an IDX split in `dir`, gzipped or not.
fn idx_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(file_err(&dir.join(stem), "not found (nor .gz); Fashion-MNIST is in Debian's dataset-fashion-mnist package"))
}

/// MNIST or Fashion-MNIST from `dir` (the four standard file names): (train, test).
pub fn load_mnist_like(dir: &Path) -> Result<(Dataset, Dataset)> {
    let train = load_idx(&idx_file(dir, "train-images-idx3-ubyte")?, &idx_file(dir, "train-labels-idx1-ubyte")?)?;
    let test = load_idx(&idx_file(dir, "t10k-images-idx3-ubyte")?, &idx_file(dir, "t10k-labels-idx1-ubyte")?)?;
    let classes = train.classes.max(test.classes);
    Ok((Dataset { classes, ..train }, Dataset { classes, ..test }))
}

/// CIFAR-10 binary batches: records of a label byte and a 3x32x32 image.
pub fn load_cifar10_files(files: &[PathBuf]) -> Result<Dataset> {
    const RECORD: usize = 1 + 3 * 32 * 32;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let bytes = read(f)?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(file_err(f, format!("{} bytes is not a whole number of CIFAR-10 records of {RECORD} bytes", bytes.len())));
        }
        for r in bytes.chunks(RECORD) {
            if r[0] >= 10 {
                return Err(file_err(f, format!("label {} is not a CIFAR-10 class", r[0])));
            }
            labels.push(r[0]);
            images.extend_from_slice(&r[1..]);
        }
    }
    Ok(Dataset { images, labels, channels: 3, height: 32, width: 32, classes: 10 })
}

/// CIFAR-10 from its binary folder (`data_batch_1.bin` .. `data_batch_5.bin`,
/// `test_batch.bin`): (train, test).
pub fn load_cifar10(dir: &Path) -> Result<(Dataset, Dataset)> {
    let train: Vec<PathBuf> = (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect();
    Ok((load_cifar10_files(&train)?, load_cifar10_files(&[dir.join("test_batch.bin")])?))
}

/// The order of the training images in epoch `epoch`: a permutation drawn from `seed`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derived(seed, 1 + epoch as u64, 0).shuffle(&mut order);
    order
}
