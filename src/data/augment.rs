//! Random flips and crops of training images, drawn per image from the trial's augmentation
//! stream (never used for evaluation).

use crate::experiment::Augment;
use crate::rng::Rng;

/// How a batch's images are changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augmentation {
    /// Which changes.
    pub kind: Augment,
    /// Pixels of padding around the image before a crop.
    pub padding: usize,
    /// The input value of a padding pixel (a black pixel after the trial's scaling).
    pub fill: f32,
}

impl Augmentation {
    /// Changes each `rows` x `cols` image of `pixels` in place. Per image, in this order: one
    /// draw for the flip (when flipping), then one each for the row and column offset of the
    /// crop (when cropping), so a resumed trial that restores `rng` draws the same.
    pub fn apply(&self, pixels: &mut [f32], rows: usize, cols: usize, rng: &mut Rng) {
        if self.kind == Augment::None {
            return;
        }
        let size = rows * cols;
        let mut source = vec![0f32; size];
        for image in pixels.chunks_mut(size) {
            if self.kind.flips() && rng.below(2) == 1 {
                for row in image.chunks_mut(cols) {
                    row.reverse();
                }
            }
            if self.kind.crops() {
                let span = 2 * self.padding + 1;
                let dy = rng.below(span) as isize - self.padding as isize;
                let dx = rng.below(span) as isize - self.padding as isize;
                if dy == 0 && dx == 0 {
                    continue;
                }
                source.copy_from_slice(image);
                for y in 0..rows {
                    for x in 0..cols {
                        let (sy, sx) = (y as isize + dy, x as isize + dx);
                        image[y * cols + x] = if (0..rows as isize).contains(&sy)
                            && (0..cols as isize).contains(&sx)
                        {
                            source[sy as usize * cols + sx as usize]
                        } else {
                            self.fill
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<f32> {
        (0..12).map(|v| v as f32 + 1.0).collect() // 3 rows x 4 columns
    }

    #[test]
    fn none_leaves_images_and_the_stream_alone() {
        let mut pixels = image();
        let mut rng = Rng::new(1);
        let none = Augmentation {
            kind: Augment::None,
            padding: 2,
            fill: 0.0,
        };
        none.apply(&mut pixels, 3, 4, &mut rng);
        assert_eq!(pixels, image());
        assert_eq!(rng, Rng::new(1));
    }

    #[test]
    fn a_flip_mirrors_rows_and_a_crop_shifts_in_fill() {
        let flip = Augmentation {
            kind: Augment::Flip,
            padding: 0,
            fill: 0.0,
        };
        // Over several images both outcomes occur, and a flipped image is its rows reversed.
        let mut pixels: Vec<f32> = (0..8).flat_map(|_| image()).collect();
        flip.apply(&mut pixels, 3, 4, &mut Rng::new(3));
        let mirrored = [
            4.0, 3.0, 2.0, 1.0, 8.0, 7.0, 6.0, 5.0, 12.0, 11.0, 10.0, 9.0,
        ];
        let images: Vec<&[f32]> = pixels.chunks(12).collect();
        assert!(images.iter().all(|i| *i == image() || *i == mirrored));
        assert!(images.iter().any(|i| *i == image()) && images.iter().any(|i| *i == mirrored));

        let crop = Augmentation {
            kind: Augment::Crop,
            padding: 1,
            fill: -1.0,
        };
        let mut seen = std::collections::HashSet::new();
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let mut pixels = image();
            crop.apply(&mut pixels, 3, 4, &mut rng);
            // A shift by at most one pixel: the kept pixels are the original's, shifted.
            let shifts: Vec<(isize, isize)> = (-1..=1)
                .flat_map(|dy| (-1..=1).map(move |dx| (dy, dx)))
                .filter(|&(dy, dx)| {
                    (0..3).all(|y: isize| {
                        (0..4).all(|x: isize| {
                            let (sy, sx) = (y + dy, x + dx);
                            let expected = if (0..3).contains(&sy) && (0..4).contains(&sx) {
                                (sy * 4 + sx + 1) as f32
                            } else {
                                -1.0
                            };
                            pixels[(y * 4 + x) as usize] == expected
                        })
                    })
                })
                .collect();
            assert_eq!(shifts.len(), 1, "{pixels:?}");
            seen.insert(shifts[0]);
        }
        assert_eq!(seen.len(), 9, "every offset in [-1, 1] x [-1, 1] occurs");
    }
}
