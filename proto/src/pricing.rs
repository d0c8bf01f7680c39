//! Prices and costs in exact integers.
//!
//! Prices are stored in picodollars per token, which is exactly micro-dollars per million tokens,
//! so any price published with up to six decimals of dollars per million tokens is exact; costs
//! are token counts times those prices, in picodollars, with no rounding anywhere.

/// Picodollars in one dollar.
pub const PUSD_PER_USD: i64 = 1_000_000_000_000;

/// Why a price string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price {0:?} is not a decimal number of dollars per million tokens (e.g. \"2.50\")")]
    NotDecimal(String),
    #[error("amount {0:?} has more decimal places than can be stored exactly")]
    TooPrecise(String),
    #[error("price {0:?} is out of range")]
    OutOfRange(String),
}

/// Parses "2.50" (dollars per million tokens) into picodollars per token.
pub fn parse_usd_per_mtok(s: &str) -> Result<i64, PriceError> {
    // Micro-dollars per million tokens are picodollars per token: 6 decimal places.
    parse_fixed(s, 6)
}

/// Parses an amount of dollars ("10", "0.25") into picodollars.
pub fn parse_usd(s: &str) -> Result<i64, PriceError> {
    parse_fixed(s, 12)
}

/// A plain non-negative decimal as an integer count of 10^-`places` units, exactly.
fn parse_fixed(s: &str, places: usize) -> Result<i64, PriceError> {
    let t = s.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
        return Err(PriceError::NotDecimal(s.to_string()));
    }
    if frac.len() > places {
        return Err(PriceError::TooPrecise(s.to_string()));
    }
    let out_of_range = || PriceError::OutOfRange(s.to_string());
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| out_of_range())?
    };
    let frac_units: i64 = format!("{frac:0<places$}").parse().unwrap_or(0);
    whole
        .checked_mul(10i64.pow(places as u32))
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(out_of_range)
}

/// Formats picodollars per token as dollars per million tokens, e.g. 2_500_000 → "2.50".
pub fn format_usd_per_mtok(pusd_per_token: i64) -> String {
    trim_decimal(pusd_per_token / 1_000_000, pusd_per_token % 1_000_000, 6)
}

/// Formats a cost in picodollars as dollars, e.g. 1_500_000_000 → "0.0015".
pub fn format_usd(pusd: i64) -> String {
    let sign = if pusd < 0 { "-" } else { "" };
    let a = pusd.unsigned_abs() as i128;
    let whole = (a / PUSD_PER_USD as i128) as i64;
    let frac = (a % PUSD_PER_USD as i128) as i64;
    format!("{sign}{}", trim_decimal(whole, frac, 12))
}

fn trim_decimal(whole: i64, frac: i64, places: usize) -> String {
    let f = format!("{:0width$}", frac, width = places);
    let f = f.trim_end_matches('0');
    // Keep at least two decimals so money reads as money.
    let f = if f.len() < 2 {
        format!("{f:0<2}")
    } else {
        f.to_string()
    };
    format!("{whole}.{f}")
}

/// A price in picodollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Fresh (uncached) input.
    pub input: i64,
    /// Input read from the provider's prompt cache.
    pub cached_input: i64,
    /// Output, reasoning included.
    pub output: i64,
}

/// Token counts as billed: `input` includes `cached_input` (OpenAI's convention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached ones included.
    pub input: u64,
    /// The cached share of `input`.
    pub cached_input: u64,
    /// Completion tokens, reasoning included.
    pub output: u64,
}

/// The exact cost in picodollars, or `None` if it would overflow.
pub fn cost(usage: Usage, price: Price) -> Option<i64> {
    let cached = usage.cached_input.min(usage.input);
    let fresh = usage.input - cached;
    let part = |tokens: u64, p: i64| i64::try_from(tokens).ok()?.checked_mul(p);
    part(fresh, price.input)?
        .checked_add(part(cached, price.cached_input)?)?
        .checked_add(part(usage.output, price.output)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let cases: &[(&str, Result<i64, ()>)] = &[
            ("2.50", Ok(2_500_000)),
            ("2.5", Ok(2_500_000)),
            ("0.0375", Ok(37_500)),
            ("15", Ok(15_000_000)),
            (".5", Ok(500_000)),
            ("0.000001", Ok(1)),
            ("0", Ok(0)),
            ("0.0000001", Err(())),
            ("", Err(())),
            (".", Err(())),
            ("-1", Err(())),
            ("1e3", Err(())),
            ("1.2.3", Err(())),
            ("99999999999999999999", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_usd_per_mtok(input).map_err(|_| ()),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn dollars() {
        assert_eq!(parse_usd("10"), Ok(10 * PUSD_PER_USD));
        assert_eq!(parse_usd("0.25"), Ok(PUSD_PER_USD / 4));
        assert_eq!(parse_usd("0.000000000001"), Ok(1));
        assert!(parse_usd("0.0000000000001").is_err());
        assert!(parse_usd("-1").is_err());
        assert!(parse_usd("9999999999").is_err());
        assert_eq!(format_usd(parse_usd("12.34").unwrap()), "12.34");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_usd_per_mtok(2_500_000), "2.50");
        assert_eq!(format_usd_per_mtok(37_500), "0.0375");
        assert_eq!(format_usd_per_mtok(0), "0.00");
        assert_eq!(format_usd(1_500_000_000), "0.0015");
        assert_eq!(format_usd(PUSD_PER_USD * 3), "3.00");
        assert_eq!(format_usd(1), "0.000000000001");
        assert_eq!(format_usd(-PUSD_PER_USD), "-1.00");
    }

    #[test]
    fn costs_are_exact() {
        // gpt-4o-mini list prices: $0.15 input, $0.075 cached input, $0.60 output per MTok.
        let price = Price {
            input: parse_usd_per_mtok("0.15").unwrap(),
            cached_input: parse_usd_per_mtok("0.075").unwrap(),
            output: parse_usd_per_mtok("0.60").unwrap(),
        };
        let usage = Usage {
            input: 1_000,
            cached_input: 400,
            output: 250,
        };
        // 600 × 0.15e-6 + 400 × 0.075e-6 + 250 × 0.60e-6 dollars = 0.00027 dollars.
        assert_eq!(cost(usage, price), Some(270_000_000));
        assert_eq!(format_usd(cost(usage, price).unwrap()), "0.00027");
        // More cached than input (a provider bug) never goes negative.
        let odd = Usage {
            input: 10,
            cached_input: 20,
            output: 0,
        };
        assert_eq!(cost(odd, price), Some(10 * 75_000));
        assert_eq!(
            cost(
                Usage {
                    input: u64::MAX,
                    ..Default::default()
                },
                price
            ),
            None
        );
    }
}
