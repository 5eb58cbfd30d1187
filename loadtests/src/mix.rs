//! What the scenarios ask for: a small deterministic PRNG, a Zipf popularity skew, and the
//! checkout mix (1-5 lines, then 70% placed and fulfilled, 20% released, 10% left to expire).
//!
//! Everything here is pure: the `i`-th request of a run is a function of `(seed, i)` only
//! ([`Rng::for_request`]), so open-loop and closed-loop runs, and every target of a `compare`,
//! ask for exactly the same reservations, whatever the order requests complete in.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for workload choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of request `i` of a run with `seed` (independent streams per request).
    pub fn for_request(seed: u64, i: u64) -> Rng {
        let mut mixer = Rng(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Rng(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n` > 0; multiply-shift, bias below 2^-32 for our `n`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A Zipf distribution over ranks `0..n`: rank `k` has weight `1 / (k + 1)^s`. With `s` = 1
/// (the default), the top 1% of 10,000 SKUs gets ~52% of the demand, the typical long tail of
/// a retail catalogue.
#[derive(Debug, Clone)]
pub struct Zipf {
    /// Cumulative weights; `cdf[k]` = sum of the weights of ranks `0..=k`.
    cdf: Vec<f64>,
    /// A guide table (Chen and Asau): `guide[j]` is the rank at `u = j / guide.len()`, where a
    /// search for any `u` in `[j / len, (j + 1) / len)` can start. It makes a draw O(1) on
    /// average instead of a binary search of the whole CDF (a listing page takes ~70 draws;
    /// the search was a tenth of the generator's CPU), and gives exactly the same ranks.
    guide: Vec<u32>,
}

impl Zipf {
    /// A distribution over `n` (> 0) ranks with exponent `s` (>= 0; 0 is uniform).
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cdf = (0..n.max(1))
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(s);
                total
            })
            .collect::<Vec<f64>>();
        let buckets = cdf.len();
        let guide = (0..buckets)
            .map(|j| Self::search(&cdf, j as f64 / buckets as f64) as u32)
            .collect();
        Zipf { cdf, guide }
    }

    /// The rank at `u` by binary search of `cdf`: the first rank whose cumulative weight
    /// exceeds `u * total` (the last rank if none does, against rounding).
    fn search(cdf: &[f64], u: f64) -> usize {
        let x = u * cdf.last().copied().unwrap_or(0.0);
        cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Whether there are no ranks (never: `new` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// The cumulative weights.
    pub fn cdf(&self) -> &[f64] {
        &self.cdf
    }

    /// The rank at uniform position `u` in `[0, 1)`: the first rank whose cumulative weight
    /// exceeds `u * total`.
    pub fn rank_at(&self, u: f64) -> usize {
        let last = self.cdf.len() - 1;
        let x = u * self.cdf[last];
        let bucket = ((u * self.guide.len() as f64) as usize).min(self.guide.len() - 1);
        let mut k = self.guide[bucket] as usize;
        // The guide's start is at or before the answer unless rounding put it one past; step
        // back over that, then forward to the first rank whose weight exceeds `x`.
        while k > 0 && self.cdf[k - 1] > x {
            k -= 1;
        }
        while k < last && self.cdf[k] <= x {
            k += 1;
        }
        k
    }

    /// A random rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        self.rank_at(rng.unit())
    }
}

/// What a checkout does after its reservation is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Fate {
    /// Placed as an order and fulfilled (shipped).
    Commit,
    /// Released (the shopper gave up).
    Release,
    /// Left to expire at its TTL (abandoned tab).
    Expire,
}

impl Fate {
    /// The fate's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Commit => "commit",
            Fate::Release => "release",
            Fate::Expire => "expire",
        }
    }
}

/// The checkout scenario's mix.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckoutMix {
    /// SKUs in the catalogue.
    pub skus: usize,
    /// Zipf exponent of SKU popularity.
    pub skew: f64,
    /// Fewest lines per checkout.
    pub lines_min: usize,
    /// Most lines per checkout (distinct SKUs).
    pub lines_max: usize,
    /// Most units per line (1..=this, uniform).
    pub qty_max: i64,
    /// Percent of granted checkouts placed and fulfilled.
    pub commit_percent: u64,
    /// Percent released (the rest expire).
    pub release_percent: u64,
}

impl Default for CheckoutMix {
    /// 10,000 SKUs, Zipf 1.0, 1-5 lines of 1-2 units, 70% placed, 20% released, 10% expire.
    fn default() -> Self {
        CheckoutMix {
            skus: 10_000,
            skew: 1.0,
            lines_min: 1,
            lines_max: 5,
            qty_max: 2,
            commit_percent: 70,
            release_percent: 20,
        }
    }
}

/// One line of a generated checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutLine {
    /// The SKU's popularity rank.
    pub sku: usize,
    /// Units.
    pub qty: i64,
}

/// One generated checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// Its lines, distinct SKUs.
    pub lines: Vec<CheckoutLine>,
    /// What happens after the hold is granted.
    pub fate: Fate,
}

impl CheckoutMix {
    /// The fate for a uniform draw `d` in `0..100`.
    pub fn fate_for(&self, d: u64) -> Fate {
        if d < self.commit_percent {
            Fate::Commit
        } else if d < self.commit_percent + self.release_percent {
            Fate::Release
        } else {
            Fate::Expire
        }
    }

    /// A checkout drawn from `rng` with SKU ranks from `zipf` (built for `self.skus`).
    pub fn checkout(&self, zipf: &Zipf, rng: &mut Rng) -> Checkout {
        let span = (self.lines_max.max(self.lines_min) - self.lines_min) as u64 + 1;
        let wanted = (self.lines_min + rng.below(span) as usize).min(zipf.len());
        let mut lines: Vec<CheckoutLine> = Vec::with_capacity(wanted);
        // Distinct SKUs: redraw a duplicate (a bounded number of times on tiny catalogues).
        let mut draws = 0;
        while lines.len() < wanted && draws < 64 * wanted.max(1) {
            draws += 1;
            let sku = zipf.sample(rng);
            if lines.iter().all(|l| l.sku != sku) {
                let qty = 1 + rng.below(self.qty_max.max(1) as u64) as i64;
                lines.push(CheckoutLine { sku, qty });
            }
        }
        let fate = self.fate_for(rng.below(100));
        Checkout { lines, fate }
    }
}

/// The SKU id of rank `k` in the synthetic catalogue (`sku-000001` is the most popular).
pub fn sku_name(k: usize) -> String {
    format!("sku-{:06}", k + 1)
}

/// `n` distinct SKU ranks for a product listing page, drawn by popularity.
pub fn listing(zipf: &Zipf, n: usize, rng: &mut Rng) -> Vec<usize> {
    let n = n.min(zipf.len());
    let mut out: Vec<usize> = Vec::with_capacity(n);
    let mut draws = 0;
    while out.len() < n && draws < 64 * n.max(1) {
        draws += 1;
        let k = zipf.sample(rng);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    // Fill up deterministically if the skew made distinct draws too rare.
    let mut k = 0;
    while out.len() < n {
        if !out.contains(&k) {
            out.push(k);
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_and_unit_stay_in_range() {
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            assert!(rng.below(5) < 5);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        // Multiply-shift maps the top bits: the extremes of u64 land on 0 and n-1.
        assert_eq!(((u128::from(u64::MAX) * 5) >> 64) as u64, 4);
    }

    #[test]
    fn the_guide_table_gives_the_binary_search_rank_for_every_u() {
        for (n, skew) in [
            (1, 1.0),
            (3, 1.0),
            (4, 0.0),
            (60, 3.0),
            (10_000, 1.0),
            (7_919, 0.5),
        ] {
            let z = Zipf::new(n, skew);
            let mut rng = Rng::new(n as u64);
            // Random positions, and each bucket's edge with its neighbours in floating point.
            let edges = (0..n).flat_map(|j| {
                let e = j as f64 / n as f64;
                [
                    e,
                    f64::from_bits(e.to_bits().saturating_sub(1)),
                    f64::from_bits(e.to_bits() + 1),
                ]
            });
            for u in (0..20_000).map(|_| rng.unit()).chain(edges) {
                let u = u.clamp(0.0, 0.999_999_999_999);
                assert_eq!(
                    z.rank_at(u),
                    Zipf::search(&z.cdf, u),
                    "n {n} skew {skew} u {u}"
                );
            }
        }
    }

    #[test]
    fn zipf_cdf_and_ranks_are_exact() {
        let z = Zipf::new(3, 1.0);
        assert_eq!(z.cdf(), &[1.0, 1.5, 1.5 + 1.0 / 3.0]);
        let total = 1.5 + 1.0 / 3.0;
        // Rank 0 owns [0, 1/total), rank 1 [1/total, 1.5/total), rank 2 the rest.
        assert_eq!(z.rank_at(0.0), 0);
        assert_eq!(z.rank_at(0.5), 0); // 0.5 * 1.8333 = 0.9167 < 1
        assert_eq!(z.rank_at(0.6), 1); // 1.1 in [1, 1.5)
        assert_eq!(z.rank_at(1.0 / total), 1);
        assert_eq!(z.rank_at(0.9), 2); // 1.65 >= 1.5
        assert_eq!(z.rank_at(0.999_999_999), 2);
        // Uniform when s = 0.
        let u = Zipf::new(4, 0.0);
        assert_eq!(u.cdf(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            [0.0, 0.24, 0.25, 0.5, 0.99].map(|x| u.rank_at(x)),
            [0, 0, 1, 2, 3]
        );
    }

    #[test]
    fn zipf_top_ranks_get_their_share() {
        // With s = 1 over 10,000 ranks, rank 0 has weight 1 / H(10000) = 10.19%.
        let z = Zipf::new(10_000, 1.0);
        let mut rng = Rng::new(42);
        let n = 200_000;
        let top = (0..n).filter(|_| z.sample(&mut rng) == 0).count();
        let share = top as f64 / n as f64;
        assert!((0.098..0.106).contains(&share), "{share}");
    }

    #[test]
    fn fates_split_70_20_10() {
        let mix = CheckoutMix::default();
        assert_eq!(mix.fate_for(0), Fate::Commit);
        assert_eq!(mix.fate_for(69), Fate::Commit);
        assert_eq!(mix.fate_for(70), Fate::Release);
        assert_eq!(mix.fate_for(89), Fate::Release);
        assert_eq!(mix.fate_for(90), Fate::Expire);
        assert_eq!(mix.fate_for(99), Fate::Expire);
        let counts = (0..100).fold([0; 3], |mut c, d| {
            c[mix.fate_for(d) as usize] += 1;
            c
        });
        assert_eq!(counts, [70, 20, 10]);
    }

    #[test]
    fn checkouts_have_1_to_5_distinct_lines() {
        let mix = CheckoutMix::default();
        let zipf = Zipf::new(mix.skus, mix.skew);
        let mut lines_hist = [0u64; 6];
        let mut fates = [0u64; 3];
        for i in 0..50_000 {
            let c = mix.checkout(&zipf, &mut Rng::for_request(1, i));
            assert!((1..=5).contains(&c.lines.len()));
            for (k, &CheckoutLine { sku, qty }) in c.lines.iter().enumerate() {
                assert!(sku < mix.skus && (1..=2).contains(&qty));
                assert!(c.lines[..k].iter().all(|l| l.sku != sku));
            }
            lines_hist[c.lines.len()] += 1;
            fates[c.fate as usize] += 1;
        }
        // Uniform 1..=5 lines (10,000 each, +-3%) and the 70/20/10 split (+-2% of the total).
        for n in &lines_hist[1..] {
            assert!((9_700..10_300).contains(n), "{lines_hist:?}");
        }
        assert!((34_000..36_000).contains(&fates[0]), "{fates:?}");
        assert!((9_000..11_000).contains(&fates[1]), "{fates:?}");
        assert!((4_000..6_000).contains(&fates[2]), "{fates:?}");
    }

    #[test]
    fn the_same_seed_and_index_give_the_same_checkout() {
        let mix = CheckoutMix::default();
        let zipf = Zipf::new(mix.skus, mix.skew);
        let a = mix.checkout(&zipf, &mut Rng::for_request(9, 12_345));
        let b = mix.checkout(&zipf, &mut Rng::for_request(9, 12_345));
        let c = mix.checkout(&zipf, &mut Rng::for_request(9, 12_346));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn tiny_catalogues_still_give_distinct_lines() {
        let mix = CheckoutMix {
            skus: 2,
            ..CheckoutMix::default()
        };
        let zipf = Zipf::new(2, 1.0);
        for i in 0..1_000 {
            let c = mix.checkout(&zipf, &mut Rng::for_request(3, i));
            assert!((1..=2).contains(&c.lines.len()));
        }
        let page = listing(&Zipf::new(60, 3.0), 50, &mut Rng::new(1));
        let mut sorted = page.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 50);
        assert_eq!(sku_name(0), "sku-000001");
        assert_eq!(sku_name(41), "sku-000042");
    }
}
