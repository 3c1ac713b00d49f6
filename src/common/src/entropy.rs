//! The randomness seam: secrets, salts and nonces come from an [`Entropy`], so tests and
//! simulations can make them repeatable while production draws from the operating system.

use rand::{RngCore, SeedableRng};

/// A source of random bytes.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    fn fill(&self, buf: &mut [u8]);

    /// `n` characters drawn uniformly from `alphabet` (at most 256 characters).
    fn string(&self, alphabet: &[u8], n: usize) -> String {
        assert!(!alphabet.is_empty() && alphabet.len() <= 256, "alphabet of 1..=256 characters");
        let mut out = String::with_capacity(n);
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - (256 % alphabet.len());
        let mut buf = [0u8; 64];
        while out.len() < n {
            self.fill(&mut buf);
            for &b in buf.iter().filter(|&&b| (b as usize) < limit) {
                if out.len() == n {
                    break;
                }
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
        out
    }
}

/// The operating system's generator (through `rand`'s thread-local, OS-seeded CSPRNG).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::rng().fill_bytes(buf);
    }
}

/// A seeded generator for tests and simulation: the same seed gives the same bytes.
#[derive(Debug)]
pub struct SeededEntropy(std::sync::Mutex<rand::rngs::StdRng>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self(std::sync::Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) {
        // A poisoned lock still holds a usable generator.
        let mut rng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rng.fill_bytes(buf);
    }
}

/// Letters and digits: secrets and ids that need no quoting in shells or URLs.
pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_entropy_repeats_and_strings_use_the_alphabet() {
        let a = SeededEntropy::new(1).string(ALPHANUMERIC, 40);
        assert_eq!(a, SeededEntropy::new(1).string(ALPHANUMERIC, 40));
        assert_ne!(a, SeededEntropy::new(2).string(ALPHANUMERIC, 40));
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| ALPHANUMERIC.contains(&b)));
        let os = OsEntropy.string(b"ab", 100);
        assert!(os.contains('a') && os.contains('b'));
    }
}
