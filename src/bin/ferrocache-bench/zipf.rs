//! Key popularity: uniform, or Zipf with exponent `s` sampled in O(1) from a Vose alias
//! table built once (the only `powf` calls happen while building it).

/// Fast, seedable pseudo-random numbers (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so nearby seeds give unrelated streams; never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Key popularity distribution over `0..n`.
#[derive(Debug)]
pub enum KeyChooser {
    /// Every key equally likely.
    Uniform(u64),
    /// Zipf: key `i` has weight `1 / (i + 1)^s`; alias table of `n` entries.
    Alias {
        /// Probability (scaled to u32) of keeping the drawn column.
        prob: Vec<u32>,
        /// The other key of each column.
        alias: Vec<u32>,
    },
}

impl KeyChooser {
    /// Uniform over `n` keys.
    pub fn uniform(n: u64) -> KeyChooser {
        KeyChooser::Uniform(n.max(1))
    }

    /// Zipf with exponent `s` over `n` keys (n < 2^32).
    pub fn zipf(n: u64, s: f64) -> Result<KeyChooser, String> {
        if n == 0 || n > u32::MAX as u64 {
            return Err(format!("zipf: key space {n} out of range"));
        }
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!("zipf: exponent {s} must be >= 0"));
        }
        let n = n as usize;
        let w: Vec<f64> = (0..n).map(|i| ((i + 1) as f64).powf(-s)).collect();
        let total: f64 = w.iter().sum();
        // Vose's alias method on probabilities scaled by n.
        let mut scaled: Vec<f64> = w.iter().map(|x| x * n as f64 / total).collect();
        let mut prob = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let mut small: Vec<usize> = Vec::new();
        let mut large: Vec<usize> = Vec::new();
        for (i, &p) in scaled.iter().enumerate() {
            if p < 1.0 {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s_i), Some(&l_i)) = (small.last(), large.last()) {
            small.pop();
            prob[s_i] = (scaled[s_i] * u32::MAX as f64) as u32;
            alias[s_i] = l_i as u32;
            scaled[l_i] -= 1.0 - scaled[s_i];
            if scaled[l_i] < 1.0 {
                large.pop();
                small.push(l_i);
            }
        }
        // Leftovers (rounding) keep their own column with probability 1.
        Ok(KeyChooser::Alias { prob, alias })
    }

    /// Draws a key index.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyChooser::Uniform(n) => rng.below(*n),
            KeyChooser::Alias { prob, alias } => {
                let r = rng.next_u64();
                let i = (((r >> 32) * prob.len() as u64) >> 32) as usize;
                if (r as u32) < prob[i] {
                    i as u64
                } else {
                    alias[i] as u64
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_frequencies_follow_weights() {
        let n = 1000u64;
        let z = KeyChooser::zipf(n, 1.0).unwrap();
        let mut rng = Rng::new(7);
        let mut c = vec![0u64; n as usize];
        let draws = 400_000;
        for _ in 0..draws {
            c[z.sample(&mut rng) as usize] += 1;
        }
        let h: f64 = (1..=n).map(|i| 1.0 / i as f64).sum();
        for i in [0usize, 1, 9] {
            let want = draws as f64 / ((i + 1) as f64 * h);
            let got = c[i] as f64;
            assert!((got - want).abs() / want < 0.05, "key {i}: {got} vs {want}");
        }
    }

    #[test]
    fn uniform_in_range() {
        let u = KeyChooser::uniform(10);
        let mut rng = Rng::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[u.sample(&mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
