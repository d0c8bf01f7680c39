//! The price table: admin requests turned into price sheets, new versions stored, the versions
//! in force read back (docs/cost.md).

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};
use weir_proto::admin::{Price, PriceRates, SetPriceRequest};
use weir_proto::pricing::{self, LongContext, PriceSheet, Rates};

/// Rates from their decimal strings; `what` prefixes the field names in errors.
fn rates_from(what: &str, r: &PriceRates, cached_defaults_to_input: bool) -> Result<Rates, String> {
    let field = |name: &str| {
        if what.is_empty() {
            name.to_string()
        } else {
            format!("{what}.{name}")
        }
    };
    let required = |name: &str, v: &str| {
        if v.trim().is_empty() {
            return Err(format!("{} is required", field(name)));
        }
        pricing::parse_usd_per_mtok(v).map_err(|e| format!("{}: {e}", field(name)))
    };
    let optional = |name: &str, v: &str| {
        if v.trim().is_empty() {
            Ok(None)
        } else {
            pricing::parse_usd_per_mtok(v)
                .map(Some)
                .map_err(|e| format!("{}: {e}", field(name)))
        }
    };
    let input = required("input_per_mtok", &r.input_per_mtok)?;
    let cached_input = match optional("cached_input_per_mtok", &r.cached_input_per_mtok)? {
        Some(c) => c,
        None if cached_defaults_to_input => input,
        None => return Err(format!("{} is required", field("cached_input_per_mtok"))),
    };
    Ok(Rates {
        input,
        cached_input,
        output: required("output_per_mtok", &r.output_per_mtok)?,
        cache_write_5m: optional("cache_write_5m_per_mtok", &r.cache_write_5m_per_mtok)?,
        cache_write_1h: optional("cache_write_1h_per_mtok", &r.cache_write_1h_per_mtok)?,
        reasoning: optional("reasoning_per_mtok", &r.reasoning_per_mtok)?,
        audio_input: optional("audio_input_per_mtok", &r.audio_input_per_mtok)?,
        audio_output: optional("audio_output_per_mtok", &r.audio_output_per_mtok)?,
        image_input: optional("image_input_per_mtok", &r.image_input_per_mtok)?,
        image_output: optional("image_output_per_mtok", &r.image_output_per_mtok)?,
    })
}

/// Rates as decimal strings; kinds not priced stay empty.
fn rates_message(r: &Rates) -> PriceRates {
    let opt = |v: Option<i64>| v.map(pricing::format_usd_per_mtok).unwrap_or_default();
    PriceRates {
        input_per_mtok: pricing::format_usd_per_mtok(r.input),
        cached_input_per_mtok: pricing::format_usd_per_mtok(r.cached_input),
        output_per_mtok: pricing::format_usd_per_mtok(r.output),
        cache_write_5m_per_mtok: opt(r.cache_write_5m),
        cache_write_1h_per_mtok: opt(r.cache_write_1h),
        reasoning_per_mtok: opt(r.reasoning),
        audio_input_per_mtok: opt(r.audio_input),
        audio_output_per_mtok: opt(r.audio_output),
        image_input_per_mtok: opt(r.image_input),
        image_output_per_mtok: opt(r.image_output),
    }
}

/// The base rates of a request, which are flat fields of it.
fn base_of(r: &SetPriceRequest) -> PriceRates {
    PriceRates {
        input_per_mtok: r.input_per_mtok.clone(),
        cached_input_per_mtok: r.cached_input_per_mtok.clone(),
        output_per_mtok: r.output_per_mtok.clone(),
        cache_write_5m_per_mtok: r.cache_write_5m_per_mtok.clone(),
        cache_write_1h_per_mtok: r.cache_write_1h_per_mtok.clone(),
        reasoning_per_mtok: r.reasoning_per_mtok.clone(),
        audio_input_per_mtok: r.audio_input_per_mtok.clone(),
        audio_output_per_mtok: r.audio_output_per_mtok.clone(),
        image_input_per_mtok: r.image_input_per_mtok.clone(),
        image_output_per_mtok: r.image_output_per_mtok.clone(),
    }
}

/// The sheet a request describes, or a message naming the bad field.
pub fn sheet_from_request(r: &SetPriceRequest) -> Result<PriceSheet, String> {
    let base = rates_from("", &base_of(r), true)?;
    let long_context = match (&r.long_context, r.long_context_above_input_tokens) {
        (None, 0) => None,
        (Some(_), 0) => {
            return Err("long_context needs long_context_above_input_tokens (the threshold)".into())
        }
        (None, _) => return Err("long_context_above_input_tokens needs long_context rates".into()),
        (Some(lc), above) => Some(LongContext {
            above_input_tokens: above,
            rates: rates_from("long_context", lc, true)?,
        }),
    };
    let mut service_tiers = std::collections::BTreeMap::new();
    for (name, rates) in &r.service_tiers {
        service_tiers.insert(
            name.clone(),
            rates_from(&format!("service_tiers[{name}]"), rates, true)?,
        );
    }
    let sheet = PriceSheet {
        base,
        long_context,
        service_tiers,
    };
    sheet.validate()?;
    Ok(sheet)
}

/// The admin view of a stored version.
pub fn to_message(model_key: &str, id: i64, valid_from: DateTime<Utc>, s: &PriceSheet) -> Price {
    let base = rates_message(&s.base);
    Price {
        model_key: model_key.to_string(),
        input_per_mtok: base.input_per_mtok,
        cached_input_per_mtok: base.cached_input_per_mtok,
        output_per_mtok: base.output_per_mtok,
        valid_from: valid_from.to_rfc3339_opts(SecondsFormat::Micros, true),
        version: id,
        cache_write_5m_per_mtok: base.cache_write_5m_per_mtok,
        cache_write_1h_per_mtok: base.cache_write_1h_per_mtok,
        reasoning_per_mtok: base.reasoning_per_mtok,
        audio_input_per_mtok: base.audio_input_per_mtok,
        audio_output_per_mtok: base.audio_output_per_mtok,
        image_input_per_mtok: base.image_input_per_mtok,
        image_output_per_mtok: base.image_output_per_mtok,
        long_context_above_input_tokens: s.long_context.map_or(0, |lc| lc.above_input_tokens),
        long_context: s.long_context.map(|lc| rates_message(&lc.rates)),
        service_tiers: s
            .service_tiers
            .iter()
            .map(|(k, r)| (k.clone(), rates_message(r)))
            .collect(),
    }
}

/// When a new version starts: now when not given; never in the past, so no request already
/// made is repriced.
pub fn valid_from(text: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let at = DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| format!("valid_from {text:?} is not an RFC 3339 time: {e}"))?
        .with_timezone(&Utc);
    if at < now {
        return Err(format!(
            "valid_from {text:?} is in the past: a price applies to new requests only"
        ));
    }
    Ok(Some(at))
}

/// Stores a new version; returns its id and start.
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    model_key: &str,
    sheet: &PriceSheet,
    valid_from: Option<DateTime<Utc>>,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO prices (model_key, input_pusd_per_token, cached_input_pusd_per_token,
                             output_pusd_per_token, extra, valid_from)
         VALUES ($1, $2, $3, $4, $5, coalesce($6, now())) RETURNING id, valid_from",
    )
    .bind(model_key)
    .bind(sheet.base.input)
    .bind(sheet.base.cached_input)
    .bind(sheet.base.output)
    .bind(sheet.extra_json())
    .bind(valid_from)
    .fetch_one(&mut **tx)
    .await?;
    Ok((row.get("id"), row.get("valid_from")))
}

/// The sheet of a `prices` row (its three rate columns and `extra`).
pub fn sheet_from_row(r: &sqlx::postgres::PgRow) -> Result<PriceSheet, String> {
    let extra: serde_json::Value = r.get("extra");
    PriceSheet::from_parts(
        r.get("input_pusd_per_token"),
        r.get("cached_input_pusd_per_token"),
        r.get("output_pusd_per_token"),
        &extra,
    )
}

/// The version in force now of each of `models` that has one.
pub async fn current(pool: &PgPool, models: &[String]) -> Result<Vec<Price>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (model_key) id, model_key, input_pusd_per_token,
                cached_input_pusd_per_token, output_pusd_per_token, extra, valid_from
         FROM prices WHERE model_key = ANY($1) AND valid_from <= now()
         ORDER BY model_key, valid_from DESC, id DESC",
    )
    .bind(models)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let sheet = sheet_from_row(&r).ok()?;
            let model: String = r.get("model_key");
            Some(to_message(&model, r.get("id"), r.get("valid_from"), &sheet))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(input: &str, output: &str) -> SetPriceRequest {
        SetPriceRequest {
            model_key: "m".into(),
            input_per_mtok: input.into(),
            output_per_mtok: output.into(),
            ..Default::default()
        }
    }

    #[test]
    fn requests_become_sheets_and_bad_fields_are_named() {
        let s = sheet_from_request(&base("3", "15")).unwrap();
        assert_eq!(s, PriceSheet::simple(3_000_000, 3_000_000, 15_000_000));
        let full = SetPriceRequest {
            cached_input_per_mtok: "0.30".into(),
            cache_write_5m_per_mtok: "3.75".into(),
            cache_write_1h_per_mtok: "6".into(),
            long_context_above_input_tokens: 200_000,
            long_context: Some(PriceRates {
                input_per_mtok: "6".into(),
                output_per_mtok: "22.50".into(),
                ..Default::default()
            }),
            service_tiers: [(
                "batch".to_string(),
                PriceRates {
                    input_per_mtok: "1.5".into(),
                    output_per_mtok: "7.5".into(),
                    ..Default::default()
                },
            )]
            .into(),
            ..base("3", "15")
        };
        let s = sheet_from_request(&full).unwrap();
        assert_eq!(s.base.cache_write_1h, Some(6_000_000));
        assert_eq!(s.long_context.unwrap().rates.output, 22_500_000);
        assert_eq!(s.service_tiers["batch"].cached_input, 1_500_000);
        let back = to_message("m", 7, Utc::now(), &s);
        assert_eq!(back.cache_write_5m_per_mtok, "3.75");
        assert_eq!(back.reasoning_per_mtok, "");
        assert_eq!(back.service_tiers["batch"].output_per_mtok, "7.50");
        // The message turns back into the same sheet.
        let again = SetPriceRequest {
            model_key: "m".into(),
            input_per_mtok: back.input_per_mtok.clone(),
            cached_input_per_mtok: back.cached_input_per_mtok.clone(),
            output_per_mtok: back.output_per_mtok.clone(),
            cache_write_5m_per_mtok: back.cache_write_5m_per_mtok.clone(),
            cache_write_1h_per_mtok: back.cache_write_1h_per_mtok.clone(),
            long_context_above_input_tokens: back.long_context_above_input_tokens,
            long_context: back.long_context.clone(),
            service_tiers: back.service_tiers.clone(),
            ..Default::default()
        };
        assert_eq!(sheet_from_request(&again).unwrap(), s);

        let bad: &[(SetPriceRequest, &str)] = &[
            (base("", "1"), "input_per_mtok is required"),
            (base("1", "x"), "output_per_mtok"),
            (
                SetPriceRequest {
                    cache_write_1h_per_mtok: "-1".into(),
                    ..base("1", "1")
                },
                "cache_write_1h_per_mtok",
            ),
            (
                SetPriceRequest {
                    long_context_above_input_tokens: 5,
                    ..base("1", "1")
                },
                "needs long_context rates",
            ),
            (
                SetPriceRequest {
                    long_context: Some(PriceRates::default()),
                    ..base("1", "1")
                },
                "needs long_context_above_input_tokens",
            ),
            (
                SetPriceRequest {
                    service_tiers: [("flex".to_string(), PriceRates::default())].into(),
                    ..base("1", "1")
                },
                "service_tiers[flex].input_per_mtok is required",
            ),
            (
                SetPriceRequest {
                    service_tiers: [(
                        "Default".to_string(),
                        PriceRates {
                            input_per_mtok: "1".into(),
                            output_per_mtok: "1".into(),
                            ..Default::default()
                        },
                    )]
                    .into(),
                    ..base("1", "1")
                },
                "service tier \"Default\"",
            ),
        ];
        for (req, want) in bad {
            let err = sheet_from_request(req).unwrap_err();
            assert!(err.contains(want), "{err:?} should name {want:?}");
        }
    }

    #[test]
    fn valid_from_is_now_or_later() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(valid_from("", now), Ok(None));
        assert!(valid_from("2026-12-01T00:00:00Z", now).unwrap().is_some());
        assert!(valid_from("2026-11-01T00:00:00Z", now)
            .unwrap_err()
            .contains("in the past"));
        assert!(valid_from("tomorrow", now)
            .unwrap_err()
            .contains("RFC 3339"));
    }
}
