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

/// Picodollars per token for each usage kind of one model (or one tier of it). The optional
/// kinds have no default: usage of a kind the sheet does not price makes the request
/// `unpriced` rather than silently priced at another kind's rate. Reasoning is the exception:
/// every provider Weir speaks bills it as output, so it falls back to the output rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// Fresh (uncached) text input.
    pub input: i64,
    /// Input read from the provider's prompt cache.
    pub cached_input: i64,
    /// Output text (and reasoning, unless `reasoning` is set).
    pub output: i64,
    /// Prompt-cache writes kept for 5 minutes (Anthropic: 1.25 × input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<i64>,
    /// Prompt-cache writes kept for 1 hour (Anthropic: 2 × input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<i64>,
    /// Reasoning (thinking) output, when billed apart from output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<i64>,
    /// Audio input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_input: Option<i64>,
    /// Audio output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_output: Option<i64>,
    /// Image input, when billed apart from text input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_input: Option<i64>,
    /// Image output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_output: Option<i64>,
}

/// Rates that replace the base rates for a whole request whose input is above a threshold
/// (Gemini 2.5 Pro and Claude Sonnet's 1M context over 200k input tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContext {
    /// Requests with more input tokens than this (cached and cache writes included) use `rates`.
    pub above_input_tokens: u64,
    /// The long-context rates.
    pub rates: Rates,
}

/// A model's prices: base rates, an optional long-context tier, and service tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSheet {
    /// The standard rates.
    #[serde(flatten)]
    pub base: Rates,
    /// Long-context rates, applied to the whole request past the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_context: Option<LongContext>,
    /// Rates of named service tiers (`batch`, `flex`, `priority`), replacing the base rates.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub service_tiers: std::collections::BTreeMap<String, Rates>,
}

impl PriceSheet {
    /// A sheet of only the three common rates.
    pub fn simple(input: i64, cached_input: i64, output: i64) -> PriceSheet {
        PriceSheet {
            base: Rates {
                input,
                cached_input,
                output,
                ..Rates::default()
            },
            ..PriceSheet::default()
        }
    }

    /// Everything but the three common base rates, as stored in `prices.extra`.
    pub fn extra_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for k in ["input", "cached_input", "output"] {
                o.remove(k);
            }
        }
        v
    }

    /// Rebuilds a sheet from the three common base rates and `prices.extra`.
    pub fn from_parts(
        input: i64,
        cached_input: i64,
        output: i64,
        extra: &serde_json::Value,
    ) -> Result<PriceSheet, String> {
        let mut v = match extra {
            serde_json::Value::Object(o) => o.clone(),
            serde_json::Value::Null => Default::default(),
            other => return Err(format!("price extra is not an object: {other}")),
        };
        v.insert("input".into(), input.into());
        v.insert("cached_input".into(), cached_input.into());
        v.insert("output".into(), output.into());
        serde_json::from_value(serde_json::Value::Object(v)).map_err(|e| e.to_string())
    }

    /// The sheet a config-stream price version carries (its three rates and `extra_json`).
    pub fn from_config(p: &crate::config::ModelPrice) -> Result<PriceSheet, String> {
        let extra = if p.extra_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&p.extra_json).map_err(|e| e.to_string())?
        };
        PriceSheet::from_parts(
            p.input_pusd_per_token,
            p.cached_input_pusd_per_token,
            p.output_pusd_per_token,
            &extra,
        )
    }

    /// Rejects negative rates and tier names that are not plain lowercase words.
    pub fn validate(&self) -> Result<(), String> {
        let mut all = vec![("base", &self.base)];
        if let Some(lc) = &self.long_context {
            all.push(("long_context", &lc.rates));
        }
        for (name, r) in &self.service_tiers {
            if name.is_empty()
                || name.len() > 32
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "service tier {name:?} must be 1 to 32 lowercase letters, '-' or '_'"
                ));
            }
            if STANDARD_TIERS.contains(&name.as_str()) {
                return Err(format!(
                    "service tier {name:?} is the standard tier: set the base rates instead"
                ));
            }
            all.push((name.as_str(), r));
        }
        for (tier, r) in all {
            let opt = [
                r.cache_write_5m,
                r.cache_write_1h,
                r.reasoning,
                r.audio_input,
                r.audio_output,
                r.image_input,
                r.image_output,
            ];
            if [r.input, r.cached_input, r.output].iter().any(|p| *p < 0)
                || opt.iter().flatten().any(|p| *p < 0)
            {
                return Err(format!("{tier}: rates cannot be negative"));
            }
        }
        Ok(())
    }
}

/// Service-tier names that mean the standard rates.
pub const STANDARD_TIERS: &[&str] = &["", "auto", "default", "standard", "standard_only"];

/// One attempt's usage, normalised from every provider shape. Every kind is a share of `input`
/// or of `output`, so nothing is counted twice: `input` is every prompt token (cache reads and
/// writes included), `output` every generated token (reasoning included, even where the
/// provider reports it apart, as Gemini does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens.
    pub input: u64,
    /// Cache reads, within `input`.
    pub cached_input: u64,
    /// 5-minute cache writes, within `input`.
    pub cache_write_5m: u64,
    /// 1-hour cache writes, within `input`.
    pub cache_write_1h: u64,
    /// Audio input, within `input`.
    pub audio_input: u64,
    /// Image input billed apart, within `input`.
    pub image_input: u64,
    /// All generated tokens.
    pub output: u64,
    /// Reasoning, within `output`.
    pub reasoning: u64,
    /// Audio output, within `output`.
    pub audio_output: u64,
    /// Image output, within `output`.
    pub image_output: u64,
}

impl From<&crate::logs::Usage> for Usage {
    fn from(u: &crate::logs::Usage) -> Usage {
        let n = |v: Option<u64>| v.unwrap_or(0);
        Usage {
            input: n(u.input_tokens),
            cached_input: n(u.cached_input_tokens),
            cache_write_5m: n(u.cache_write_5m_tokens),
            cache_write_1h: n(u.cache_write_1h_tokens),
            audio_input: n(u.audio_input_tokens),
            image_input: n(u.image_input_tokens),
            output: n(u.output_tokens),
            reasoning: n(u.reasoning_tokens),
            audio_output: n(u.audio_output_tokens),
            image_output: n(u.image_output_tokens),
        }
    }
}

/// How a request's cost was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// Priced: the cost in picodollars.
    Priced(i64),
    /// Priced from locally counted tokens (the provider's usage never arrived).
    Estimated(i64),
    /// Usage arrived but could not be priced.
    Unpriced,
    /// No usage arrived and none could be counted.
    UsageMissing,
}

impl Pricing {
    /// The ledger's `pricing_status`.
    pub fn status(&self) -> &'static str {
        match self {
            Pricing::Priced(_) => "priced",
            Pricing::Estimated(_) => "estimated",
            Pricing::Unpriced => "unpriced",
            Pricing::UsageMissing => "usage_missing",
        }
    }

    /// The cost, when there is one.
    pub fn cost(&self) -> Option<i64> {
        match self {
            Pricing::Priced(c) | Pricing::Estimated(c) => Some(*c),
            _ => None,
        }
    }
}

/// Settles one request: the provider's own cost when it reports one (it is the bill), else
/// usage × the sheet × multipliers; `sheet` is `None` when the model has no price.
pub fn settle(
    usage: Option<&crate::logs::Usage>,
    sheet: Option<&PriceSheet>,
    multipliers_ppm: &[u32],
) -> Pricing {
    let Some(u) = usage.filter(|u| u.input_tokens.is_some() || u.output_tokens.is_some()) else {
        return Pricing::UsageMissing;
    };
    let wrap = |c: i64| {
        if u.estimated {
            Pricing::Estimated(c)
        } else {
            Pricing::Priced(c)
        }
    };
    if let Some(c) = u.provider_cost_pusd.filter(|c| *c >= 0) {
        return wrap(c);
    }
    let Some(sheet) = sheet else {
        return Pricing::Unpriced;
    };
    match cost(&Usage::from(u), sheet, &u.service_tier)
        .ok()
        .and_then(|c| apply_multipliers(c, multipliers_ppm))
    {
        Some(c) => wrap(c),
        None => Pricing::Unpriced,
    }
}

/// Why usage could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unpriceable {
    #[error("the price has no rate for {0} tokens")]
    MissingRate(&'static str),
    #[error("the price has no rates for service tier {0:?}")]
    UnknownServiceTier(String),
    #[error("the cost overflows")]
    Overflow,
}

/// The rates that apply to `usage` under `service_tier`: a named tier's own rates, else the
/// long-context rates when the input is past their threshold, else the base rates.
pub fn rates_for<'a>(
    sheet: &'a PriceSheet,
    usage: &Usage,
    service_tier: &str,
) -> Result<&'a Rates, Unpriceable> {
    if !STANDARD_TIERS.contains(&service_tier) {
        return sheet
            .service_tiers
            .get(service_tier)
            .ok_or_else(|| Unpriceable::UnknownServiceTier(service_tier.to_string()));
    }
    Ok(match &sheet.long_context {
        Some(lc) if usage.input > lc.above_input_tokens => &lc.rates,
        _ => &sheet.base,
    })
}

/// The exact cost in picodollars of `usage` under `sheet`, before multipliers.
pub fn cost(usage: &Usage, sheet: &PriceSheet, service_tier: &str) -> Result<i64, Unpriceable> {
    let r = rates_for(sheet, usage, service_tier)?;
    let u = usage;
    // Parts beyond their whole (a provider inconsistency) are clamped, never negative.
    let fresh = u
        .input
        .saturating_sub(u.cached_input)
        .saturating_sub(u.cache_write_5m)
        .saturating_sub(u.cache_write_1h)
        .saturating_sub(u.audio_input)
        .saturating_sub(u.image_input);
    let text_out = u
        .output
        .saturating_sub(u.reasoning)
        .saturating_sub(u.audio_output)
        .saturating_sub(u.image_output);
    let cached = u.cached_input.min(u.input);
    let parts: [(u64, Option<i64>, &'static str); 10] = [
        (fresh, Some(r.input), "input"),
        (cached, Some(r.cached_input), "cached input"),
        (u.cache_write_5m, r.cache_write_5m, "5-minute cache write"),
        (u.cache_write_1h, r.cache_write_1h, "1-hour cache write"),
        (u.audio_input, r.audio_input, "audio input"),
        (u.image_input, r.image_input, "image input"),
        (text_out, Some(r.output), "output"),
        (u.reasoning, r.reasoning.or(Some(r.output)), "reasoning"),
        (u.audio_output, r.audio_output, "audio output"),
        (u.image_output, r.image_output, "image output"),
    ];
    let mut total: i64 = 0;
    for (tokens, rate, kind) in parts {
        if tokens == 0 {
            continue;
        }
        let rate = rate.ok_or(Unpriceable::MissingRate(kind))?;
        let part = i64::try_from(tokens)
            .ok()
            .and_then(|t| t.checked_mul(rate))
            .ok_or(Unpriceable::Overflow)?;
        total = total.checked_add(part).ok_or(Unpriceable::Overflow)?;
    }
    Ok(total)
}

/// Parts per million: 1,000,000 is no change, 800,000 a 20 % discount.
pub const PPM_ONE: u32 = 1_000_000;

/// `cost` times each multiplier (in parts per million), rounded half up to the picodollar once
/// at the end. A picodollar is a millionth of a micro-dollar, far below any bill's precision.
pub fn apply_multipliers(cost: i64, multipliers_ppm: &[u32]) -> Option<i64> {
    let mut num: i128 = cost as i128;
    let mut den: i128 = 1;
    for m in multipliers_ppm.iter().filter(|m| **m != PPM_ONE) {
        num = num.checked_mul(*m as i128)?;
        den = den.checked_mul(PPM_ONE as i128)?;
    }
    let rounded = num
        .checked_mul(2)?
        .checked_add(den)?
        .div_euclid(den.checked_mul(2)?);
    i64::try_from(rounded).ok()
}

/// Parses a multiplier such as "0.8" or "1" into parts per million.
pub fn parse_multiplier(s: &str) -> Result<u32, PriceError> {
    let ppm = parse_fixed(s, 6)?;
    u32::try_from(ppm).map_err(|_| PriceError::OutOfRange(s.to_string()))
}

/// Formats parts per million as a multiplier, e.g. 800_000 → "0.80".
pub fn format_multiplier(ppm: u32) -> String {
    trim_decimal(ppm as i64 / 1_000_000, ppm as i64 % 1_000_000, 6)
}

/// A provider-reported cost in dollars (a JSON number such as 0.0001234 or 1.5e-5) in
/// picodollars, rounded half up at the twelfth decimal; `None` if negative or not a number.
pub fn usd_number_to_pusd(n: &serde_json::Number) -> Option<i64> {
    let text = n.to_string();
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text.as_str(), 0),
    };
    if mantissa.starts_with('-') {
        return None;
    }
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{whole}{frac}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^(exp - frac.len()); picodollars = value × 10^12.
    let shift = exp.saturating_sub(frac.len() as i32).saturating_add(12);
    let significant = digits.trim_start_matches('0');
    let mut v: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    if shift >= 0 {
        v = v.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        // Anything smaller than half a picodollar rounds to zero.
        v = match 10i128.checked_pow((-shift) as u32) {
            Some(d) => (v / d) + i128::from(v % d >= d - d / 2),
            None => 0,
        };
    }
    i64::try_from(v).ok()
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

    fn per_mtok(s: &str) -> i64 {
        parse_usd_per_mtok(s).unwrap()
    }

    fn rates(input: &str, cached: &str, output: &str) -> Rates {
        Rates {
            input: per_mtok(input),
            cached_input: per_mtok(cached),
            output: per_mtok(output),
            ..Rates::default()
        }
    }

    #[test]
    fn costs_are_exact() {
        // gpt-4o-mini list prices: $0.15 input, $0.075 cached input, $0.60 output per MTok.
        let sheet = PriceSheet {
            base: rates("0.15", "0.075", "0.60"),
            ..Default::default()
        };
        let usage = Usage {
            input: 1_000,
            cached_input: 400,
            output: 250,
            ..Default::default()
        };
        // 600 × 0.15e-6 + 400 × 0.075e-6 + 250 × 0.60e-6 dollars = 0.00027 dollars.
        assert_eq!(cost(&usage, &sheet, ""), Ok(270_000_000));
        assert_eq!(format_usd(cost(&usage, &sheet, "").unwrap()), "0.00027");
        // More cached than input (a provider bug) never goes negative.
        let odd = Usage {
            input: 10,
            cached_input: 20,
            ..Default::default()
        };
        assert_eq!(cost(&odd, &sheet, ""), Ok(10 * 75_000));
        let huge = Usage {
            input: u64::MAX,
            ..Default::default()
        };
        assert_eq!(cost(&huge, &sheet, ""), Err(Unpriceable::Overflow));
    }

    /// Each provider's published rules, worked out by hand. Prices are the list prices on the
    /// pages cited (docs/cost.md has the sources of the usage fields).
    #[test]
    fn provider_rules_by_hand() {
        // Anthropic, Claude Sonnet 4.5 (https://docs.claude.com/en/docs/about-claude/pricing):
        // $3 input, $3.75 5-minute cache writes (1.25×), $6 1-hour writes (2×), $0.30 cache
        // reads (0.1×), $15 output; over 200k input tokens (1M context) $6 / $7.50 / $12 /
        // $0.60 / $22.50 for the whole request; batch 50 %.
        let sonnet = PriceSheet {
            base: Rates {
                cache_write_5m: Some(per_mtok("3.75")),
                cache_write_1h: Some(per_mtok("6")),
                ..rates("3", "0.30", "15")
            },
            long_context: Some(LongContext {
                above_input_tokens: 200_000,
                rates: Rates {
                    cache_write_5m: Some(per_mtok("7.50")),
                    cache_write_1h: Some(per_mtok("12")),
                    ..rates("6", "0.60", "22.50")
                },
            }),
            service_tiers: [(
                "batch".to_string(),
                Rates {
                    cache_write_5m: Some(per_mtok("1.875")),
                    cache_write_1h: Some(per_mtok("3")),
                    ..rates("1.50", "0.15", "7.50")
                },
            )]
            .into(),
        };
        // OpenAI (https://platform.openai.com/docs/pricing): gpt-4o $2.50 / $1.25 cached / $10;
        // o4-mini $1.10 / $0.275 / $4.40 with reasoning billed as output; gpt-5 $1.25 / $0.125
        // / $10, batch $0.625 / $0.0625 / $5, priority $2.50 / $0.25 / $20.
        let gpt4o = PriceSheet {
            base: rates("2.50", "1.25", "10"),
            ..Default::default()
        };
        let o4_mini = PriceSheet {
            base: rates("1.10", "0.275", "4.40"),
            ..Default::default()
        };
        let gpt5 = PriceSheet {
            base: rates("1.25", "0.125", "10"),
            long_context: None,
            service_tiers: [
                ("batch".to_string(), rates("0.625", "0.0625", "5")),
                ("priority".to_string(), rates("2.50", "0.25", "20")),
            ]
            .into(),
        };
        // Gemini 2.5 Pro (https://ai.google.dev/gemini-api/docs/pricing): prompts up to 200k
        // tokens $1.25 input, $0.125 cached, $10 output (thinking included); longer prompts
        // $2.50 / $0.25 / $15.
        let gemini_pro = PriceSheet {
            base: rates("1.25", "0.125", "10"),
            long_context: Some(LongContext {
                above_input_tokens: 200_000,
                rates: rates("2.50", "0.25", "15"),
            }),
            ..Default::default()
        };
        let cases: &[(&str, &PriceSheet, Usage, &str, i64)] = &[
            (
                // 6,000 × 2.5e6 + 4,000 × 1.25e6 + 500 × 10e6 picodollars.
                "openai chat, cached",
                &gpt4o,
                Usage {
                    input: 10_000,
                    cached_input: 4_000,
                    output: 500,
                    ..Default::default()
                },
                "default",
                15_000_000_000 + 5_000_000_000 + 5_000_000_000,
            ),
            (
                // Reasoning is inside output: 976 × 1.1e6 + 1,024 × 275,000 + 3,000 × 4.4e6.
                "openai responses, cached and reasoning",
                &o4_mini,
                Usage {
                    input: 2_000,
                    cached_input: 1_024,
                    output: 3_000,
                    reasoning: 2_500,
                    ..Default::default()
                },
                "",
                1_073_600_000 + 281_600_000 + 13_200_000_000,
            ),
            (
                // 50 fresh × 3e6 + 10,000 reads × 300,000 + 2,000 5m writes × 3.75e6
                // + 1,000 1h writes × 6e6 + 400 × 15e6.
                "anthropic, reads and both write lifetimes",
                &sonnet,
                Usage {
                    input: 13_050,
                    cached_input: 10_000,
                    cache_write_5m: 2_000,
                    cache_write_1h: 1_000,
                    output: 400,
                    ..Default::default()
                },
                "standard",
                150_000_000 + 3_000_000_000 + 7_500_000_000 + 6_000_000_000 + 6_000_000_000,
            ),
            (
                // The whole request at long-context rates: 150,000 × 6e6 + 60,000 × 600,000
                // + 1,000 × 22.5e6.
                "anthropic, past 200k input",
                &sonnet,
                Usage {
                    input: 210_000,
                    cached_input: 60_000,
                    output: 1_000,
                    ..Default::default()
                },
                "standard",
                900_000_000_000 + 36_000_000_000 + 22_500_000_000,
            ),
            (
                "anthropic, batch",
                &sonnet,
                Usage {
                    input: 1_000,
                    output: 1_000,
                    ..Default::default()
                },
                "batch",
                1_500_000_000 + 7_500_000_000,
            ),
            (
                // Thoughts reported apart are normalised into output: 400 × 1.25e6
                // + 600 × 125,000 + (100 + 900) × 10e6.
                "gemini, cached content and thoughts",
                &gemini_pro,
                Usage {
                    input: 1_000,
                    cached_input: 600,
                    output: 1_000,
                    reasoning: 900,
                    ..Default::default()
                },
                "",
                500_000_000 + 75_000_000 + 10_000_000_000,
            ),
            (
                // 250,000 × 2.5e6 + 5,000 × 15e6: the whole request at the long-context rates.
                "gemini, long context",
                &gemini_pro,
                Usage {
                    input: 250_000,
                    output: 5_000,
                    reasoning: 3_000,
                    ..Default::default()
                },
                "",
                625_000_000_000 + 75_000_000_000,
            ),
            (
                // Exactly at the threshold is not past it: 200,000 × 1.25e6.
                "gemini, at the threshold",
                &gemini_pro,
                Usage {
                    input: 200_000,
                    ..Default::default()
                },
                "",
                250_000_000_000,
            ),
            (
                // 10,000 × 625,000 + 2,000 × 5e6.
                "openai batch tier",
                &gpt5,
                Usage {
                    input: 10_000,
                    output: 2_000,
                    ..Default::default()
                },
                "batch",
                6_250_000_000 + 10_000_000_000,
            ),
            (
                "openai priority tier",
                &gpt5,
                Usage {
                    input: 1_000,
                    cached_input: 1_000,
                    output: 10,
                    ..Default::default()
                },
                "priority",
                250_000_000 + 200_000_000,
            ),
        ];
        for (name, sheet, usage, tier, want) in cases {
            sheet.validate().unwrap();
            assert_eq!(cost(usage, sheet, tier), Ok(*want), "{name}");
        }
    }

    #[test]
    fn nothing_is_priced_at_another_kinds_rate() {
        let plain = PriceSheet::simple(per_mtok("3"), per_mtok("0.30"), per_mtok("15"));
        let writes = Usage {
            input: 100,
            cache_write_1h: 50,
            ..Default::default()
        };
        assert_eq!(
            cost(&writes, &plain, ""),
            Err(Unpriceable::MissingRate("1-hour cache write"))
        );
        let audio = Usage {
            output: 10,
            audio_output: 10,
            ..Default::default()
        };
        assert_eq!(
            cost(&audio, &plain, ""),
            Err(Unpriceable::MissingRate("audio output"))
        );
        assert_eq!(
            cost(&Usage::default(), &plain, "flex"),
            Err(Unpriceable::UnknownServiceTier("flex".into()))
        );
        // Reasoning falls back to the output rate, never to nothing.
        let reasoning = Usage {
            output: 10,
            reasoning: 10,
            ..Default::default()
        };
        assert_eq!(cost(&reasoning, &plain, "auto"), Ok(150_000_000));
        // A separate reasoning rate is used for the reasoning share only.
        let split = PriceSheet {
            base: Rates {
                reasoning: Some(per_mtok("20")),
                ..plain.base
            },
            ..Default::default()
        };
        let mixed = Usage {
            output: 10,
            reasoning: 4,
            ..Default::default()
        };
        assert_eq!(
            cost(&mixed, &split, ""),
            Ok(6 * 15_000_000 + 4 * 20_000_000)
        );
    }

    #[test]
    fn sheets_round_trip_through_the_stored_columns() {
        let sheet = PriceSheet {
            base: Rates {
                cache_write_5m: Some(3),
                ..rates("1", "0.1", "2")
            },
            long_context: Some(LongContext {
                above_input_tokens: 5,
                rates: rates("2", "0.2", "4"),
            }),
            service_tiers: [("flex".to_string(), rates("0.5", "0.05", "1"))].into(),
        };
        let extra = sheet.extra_json();
        assert!(extra.get("input").is_none(), "{extra}");
        let back = PriceSheet::from_parts(1_000_000, 100_000, 2_000_000, &extra).unwrap();
        assert_eq!(back, sheet);
        assert_eq!(
            PriceSheet::from_parts(1, 1, 1, &serde_json::json!({})).unwrap(),
            PriceSheet::simple(1, 1, 1)
        );
        assert!(PriceSheet::from_parts(1, 1, 1, &serde_json::json!({"bogus": 1})).is_err());
        let mut bad = sheet.clone();
        bad.service_tiers.insert("default".into(), Rates::default());
        assert!(bad.validate().is_err());
        let mut bad = sheet;
        bad.base.cache_write_1h = Some(-1);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn multipliers_round_once_half_up() {
        assert_eq!(
            apply_multipliers(25_000_000_000, &[800_000]),
            Some(20_000_000_000)
        );
        assert_eq!(apply_multipliers(7, &[500_000]), Some(4));
        assert_eq!(apply_multipliers(5, &[500_000]), Some(3));
        assert_eq!(apply_multipliers(4, &[500_000]), Some(2));
        // Two multipliers, one rounding: 3 × 0.5 × 0.5 = 0.75 → 1 (rounding twice gives 1 too,
        // but 1 × 0.7 × 0.7 = 0.49 → 0, where rounding twice gives 1).
        assert_eq!(apply_multipliers(3, &[500_000, 500_000]), Some(1));
        assert_eq!(apply_multipliers(1, &[700_000, 700_000]), Some(0));
        assert_eq!(apply_multipliers(123, &[PPM_ONE, PPM_ONE]), Some(123));
        assert_eq!(apply_multipliers(i64::MAX, &[u32::MAX, u32::MAX]), None);
        assert_eq!(parse_multiplier("0.8"), Ok(800_000));
        assert_eq!(parse_multiplier("1"), Ok(PPM_ONE));
        assert!(parse_multiplier("-1").is_err());
        assert!(parse_multiplier("5000").is_err());
        assert_eq!(format_multiplier(800_000), "0.80");
    }

    #[test]
    fn provider_costs_from_json_numbers() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        let cases: &[(&str, Option<i64>)] = &[
            ("0.000123", Some(123_000_000)),
            ("1.5e-5", Some(15_000_000)),
            ("2", Some(2 * PUSD_PER_USD)),
            ("0", Some(0)),
            ("1e-13", Some(0)),
            ("5e-13", Some(1)),
            ("0.0000000000014", Some(1)),
            ("-0.5", None),
            ("1e300", None),
        ];
        for (text, want) in cases {
            assert_eq!(usd_number_to_pusd(&n(text)), *want, "{text}");
        }
    }
}
