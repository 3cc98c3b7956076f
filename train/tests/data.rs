//! Data loaders on small synthetic files: IDX raw and gzipped, CIFAR-10 records, batches with
//! normalization, crop and flip, and seeded orders.

use std::path::{Path, PathBuf};

use train::data::{self, inflate, Augment};
use train::rng::Rng;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chanasc-train-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

/// A gzip file of stored (uncompressed) DEFLATE blocks of at most 100 bytes each.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let chunks: Vec<&[u8]> = data.chunks(100).collect();
    for (i, c) in chunks.iter().enumerate() {
        gz.push((i + 1 == chunks.len()) as u8);
        gz.extend((c.len() as u16).to_le_bytes());
        gz.extend((!(c.len() as u16)).to_le_bytes());
        gz.extend(*c);
    }
    gz.extend(inflate::crc32(data).to_le_bytes());
    gz.extend((data.len() as u32).to_le_bytes());
    gz
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// 3 images of 4x5 whose pixel (y, x) of image n is 10 n + 5 y + x, labels 2, 0, 1.
fn images() -> Vec<u8> {
    (0..3u8).flat_map(|n| (0..20u8).map(move |p| 10 * n + p)).collect()
}

#[test]
fn idx_raw_and_gzip_load_alike() {
    let (imgs, labels) = (idx(&[3, 4, 5], &images()), idx(&[3], &[2, 0, 1]));
    write(&tmp("raw-images"), &imgs);
    write(&tmp("raw-labels"), &labels);
    write(&tmp("gz-images"), &gzip_stored(&imgs));
    write(&tmp("gz-labels"), &gzip_stored(&labels));
    let raw = data::load_idx(&tmp("raw-images"), &tmp("raw-labels")).unwrap();
    let gz = data::load_idx(&tmp("gz-images"), &tmp("gz-labels")).unwrap();
    assert_eq!((raw.len(), raw.channels, raw.height, raw.width, raw.classes), (3, 1, 4, 5, 3));
    assert_eq!(raw.images, images());
    assert_eq!(gz.images, raw.images);
    assert_eq!(gz.labels, vec![2, 0, 1]);
}

#[test]
fn mnist_folder_layout() {
    let dir = tmp("mnist");
    std::fs::create_dir_all(&dir).unwrap();
    write(&dir.join("train-images-idx3-ubyte.gz"), &gzip_stored(&idx(&[3, 4, 5], &images())));
    write(&dir.join("train-labels-idx1-ubyte.gz"), &gzip_stored(&idx(&[3], &[2, 0, 1])));
    write(&dir.join("t10k-images-idx3-ubyte"), &idx(&[1, 4, 5], &images()[..20]));
    write(&dir.join("t10k-labels-idx1-ubyte"), &idx(&[1], &[4]));
    let (train, test) = data::load_mnist_like(&dir).unwrap();
    assert_eq!((train.len(), test.len(), train.classes, test.classes), (3, 1, 5, 5));
    let err = data::load_mnist_like(&tmp("nowhere")).unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("not found"), "{err}");
}

#[test]
fn malformed_idx_files_are_errors() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("magic", vec![1, 2, 8, 1, 0, 0, 0, 0], "magic"),
        ("type", vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "element type"),
        ("short", idx(&[3, 4, 5], &images()[..50]), "need 60 bytes"),
        ("header", vec![0, 0, 8, 3, 0, 0], "truncated"),
    ];
    for (name, bytes, want) in cases {
        let p = tmp(&format!("bad-{name}"));
        write(&p, &bytes);
        let err = data::read_idx(&p).unwrap_err().to_string();
        assert!(err.contains(want) && err.contains(&format!("bad-{name}")), "{name}: {err}");
    }
    // Labels that do not match the images.
    write(&tmp("mismatch-images"), &idx(&[3, 4, 5], &images()));
    write(&tmp("mismatch-labels"), &idx(&[2], &[0, 1]));
    assert!(data::load_idx(&tmp("mismatch-images"), &tmp("mismatch-labels")).unwrap_err().to_string().contains("2 labels for 3 images"));
    // A corrupt gzip file.
    let mut gz = gzip_stored(&idx(&[3], &[2, 0, 1]));
    gz.truncate(gz.len() - 3);
    write(&tmp("corrupt.gz"), &gz);
    assert!(data::read_idx(&tmp("corrupt.gz")).is_err());
}

#[test]
fn cifar10_records() {
    let mut rec = Vec::new();
    for (label, fill) in [(3u8, 7u8), (9, 200)] {
        rec.push(label);
        rec.extend(std::iter::repeat_n(fill, 3072));
    }
    write(&tmp("cifar.bin"), &rec);
    let d = data::load_cifar10_files(&[tmp("cifar.bin")]).unwrap();
    assert_eq!((d.len(), d.channels, d.height, d.width, d.labels.clone()), (2, 3, 32, 32, vec![3, 9]));
    assert_eq!(d.images[3072], 200);
    write(&tmp("cifar-short.bin"), &rec[..3000]);
    assert!(data::load_cifar10_files(&[tmp("cifar-short.bin")]).unwrap_err().to_string().contains("whole number"));
    rec[0] = 10;
    write(&tmp("cifar-label.bin"), &rec);
    assert!(data::load_cifar10_files(&[tmp("cifar-label.bin")]).unwrap_err().to_string().contains("label 10"));
}

fn dataset() -> data::Dataset {
    data::Dataset { images: images(), labels: vec![2, 0, 1], channels: 1, height: 4, width: 5, classes: 3 }
}

#[test]
fn batches_normalize_and_keep_labels() {
    let d = dataset();
    let norm = (vec![0.1], vec![0.5]);
    let (x, y) = d.batch(&[2, 0], &norm, None, &mut Rng::new(0)).unwrap();
    assert_eq!(x.shape, vec![2, 1, 4, 5]);
    assert_eq!(y.as_i64().unwrap(), &[1, 2]);
    let x = x.as_f32().unwrap();
    // Image 2, pixel (1, 2): 20 + 5 + 2.
    assert!((x[7] - (27.0 / 255.0 - 0.1) / 0.5).abs() < 1e-6);
    assert!(d.batch(&[3], &norm, None, &mut Rng::new(0)).is_err());
}

#[test]
fn flips_and_crops_move_pixels() {
    let d = dataset();
    let norm = (vec![0.0], vec![1.0 / 255.0]);
    let pixel = |x: &[f32], y: usize, xx: usize| x[y * 5 + xx].round() as i64;
    // Flip only: every draw either leaves the image or mirrors it.
    let flip = Augment { crop_padding: 0, flip: true };
    let mut seen = [false; 2];
    for seed in 0..32 {
        let (x, _) = d.batch(&[1], &norm, Some(&flip), &mut Rng::new(seed)).unwrap();
        let x = x.as_f32().unwrap();
        let mirrored = pixel(x, 0, 0) == 14;
        assert_eq!(pixel(x, 2, 1), if mirrored { 10 + 10 + 3 } else { 10 + 10 + 1 });
        seen[mirrored as usize] = true;
    }
    assert_eq!(seen, [true, true]);
    // Crop only: a shift within the padding, with zeros shifted in.
    let crop = Augment { crop_padding: 2, flip: false };
    for seed in 0..32 {
        let (x, _) = d.batch(&[2], &norm, Some(&crop), &mut Rng::new(seed)).unwrap();
        let x = x.as_f32().unwrap();
        let found = (-2i64..=2).flat_map(|dy| (-2i64..=2).map(move |dx| (dy, dx))).find(|&(dy, dx)| {
            (0..4i64).all(|y| {
                (0..5i64).all(|xx| {
                    let (sy, sx) = (y + dy, xx + dx);
                    let want = if (0..4).contains(&sy) && (0..5).contains(&sx) { 20 + 5 * sy + sx } else { 0 };
                    pixel(x, y as usize, xx as usize) == want
                })
            })
        });
        assert!(found.is_some(), "seed {seed}: not a shifted copy");
    }
    // The same stream gives the same batch.
    let a = d.batch(&[0, 1, 2], &norm, Some(&Augment { crop_padding: 1, flip: true }), &mut Rng::derived(5, 1, 2)).unwrap();
    let b = d.batch(&[0, 1, 2], &norm, Some(&Augment { crop_padding: 1, flip: true }), &mut Rng::derived(5, 1, 2)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn epoch_orders_are_seeded_permutations() {
    let a = data::epoch_order(100, 7, 3);
    assert_eq!(a, data::epoch_order(100, 7, 3));
    assert_ne!(a, data::epoch_order(100, 7, 4));
    let mut s = a.clone();
    s.sort();
    assert_eq!(s, (0..100).collect::<Vec<_>>());
}
