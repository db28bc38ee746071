//! Flush-to-zero for the compute threads. Adam's moments of weights whose gradient is zero for a
//! while (dead units, a crop's black border) decay by `beta` each step into subnormal floats,
//! and every multiply or divide touching one takes a microcode assist, so a long run slows
//! epoch after epoch (benches/ftz-check.txt). Values below 1.2e-38 carry nothing a network can
//! use, so the compute threads treat them as zero, as TensorFlow's threads do by default.

/// Sets flush-to-zero and denormals-are-zero on the calling thread (x86-64; a no-op elsewhere).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        // MXCSR bit 15: results that would be subnormal become zero; bit 6: subnormal inputs
        // are read as zero.
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write only this thread's SSE control register and
        // the 4-byte value they are given; the bits set change rounding of subnormals only.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flush_denormals;

    #[test]
    fn subnormal_results_become_zero_on_a_flushing_thread() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        let before = std::thread::spawn(move || tiny * half).join().unwrap();
        assert!(before > 0.0 && before.is_subnormal());
        let after = std::thread::spawn(move || {
            flush_denormals();
            tiny * half
        })
        .join()
        .unwrap();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(after, 0.0);
        let _ = after;
    }
}
