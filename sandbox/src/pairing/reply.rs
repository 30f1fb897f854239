//! Astarte-shaped replies and request parsing shared by the handlers: `{"data": ..}` on success,
//! `{"errors": {..}}` on failure, Elixir-style timestamps.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value, json};

/// Device ids: URL-safe alphabet; like Elixir's decoder, lenient about padding and trailing bits.
const DEVICE_ID: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub(crate) fn data(status: StatusCode, data: Value) -> Response {
    (status, Json(json!({ "data": data }))).into_response()
}

/// An Astarte error reply: `{"errors": {..}}` with its status.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    errors: Value,
}

impl Refusal {
    pub fn detail(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            errors: json!({ "detail": message }),
        }
    }

    /// A 422 changeset error on one field.
    pub fn field(field: &str, message: &str) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: json!({ field: [message] }),
        }
    }

    pub fn forbidden() -> Self {
        Self::detail(StatusCode::FORBIDDEN, "Forbidden")
    }

    pub fn not_found() -> Self {
        Self::detail(StatusCode::NOT_FOUND, "Device not found")
    }

    /// The body Phoenix's error view gives a bare status (also used for injected faults).
    pub fn status_only(status: StatusCode) -> Self {
        let message = match status {
            StatusCode::INTERNAL_SERVER_ERROR => "Internal server error",
            other => other.canonical_reason().unwrap_or("Error"),
        };
        Self::detail(status, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "errors": self.errors });
        (self.status, Json(body)).into_response()
    }
}

/// The object under `"data"` of a JSON body; an empty body or a missing `data` gives an empty
/// object (so fields are reported blank), malformed JSON is a 400 like Plug's parser.
pub(crate) fn body_data(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| Refusal::detail(StatusCode::BAD_REQUEST, "Bad Request"))?;
    match value.get("data") {
        Some(Value::Object(map)) => Ok(map.clone()),
        _ => Ok(Map::new()),
    }
}

/// A required string field; missing, null or empty is "can't be blank".
pub(crate) fn required_str<'a>(
    data: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, Refusal> {
    match data.get(field) {
        None | Some(Value::Null) => Err(Refusal::field(field, "can't be blank")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(Refusal::field(field, "can't be blank"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Refusal::field(field, "is invalid")),
    }
}

/// The canonical 22-character form of a device id, if it decodes to at least 128 bits
/// (longer "extended" ids are cut to their first 16 bytes, as Astarte does).
pub(crate) fn canonical_device_id(id: &str) -> Option<String> {
    let bytes = DEVICE_ID.decode(id).ok()?;
    let first = bytes.get(..16)?;
    Some(DEVICE_ID.encode(first))
}

/// The token of an `Authorization: Bearer <token>` header (case-insensitive `bearer:?\s+`,
/// unanchored like Pairing's regex).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let re = regex::Regex::new(r"(?i)bearer:?\s+(.*)$").ok()?;
    let token = re.captures(value)?.get(1)?.as_str().trim_end();
    (!token.is_empty()).then(|| token.to_owned())
}

/// Elixir's `DateTime.to_string` with milliseconds: `2025-03-25 19:25:00.000Z`.
pub(crate) fn timestamp(unix_millis: i64) -> String {
    let secs = unix_millis.div_euclid(1000);
    let millis = unix_millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(0, "1970-01-01 00:00:00.000Z")]
    #[case(1_742_930_700_000, "2025-03-25 19:25:00.000Z")]
    #[case(951_782_400_123, "2000-02-29 00:00:00.123Z")]
    fn timestamps_are_formatted_like_elixir(#[case] millis: i64, #[case] text: &str) {
        assert_eq!(timestamp(millis), text);
    }

    #[rstest]
    #[case("V_zv6ThCCtXWveQ8mPjsKg", Some("V_zv6ThCCtXWveQ8mPjsKg"))]
    #[case("V_zv6ThCCtXWveQ8mPjsKgAAAA", Some("V_zv6ThCCtXWveQ8mPjsKg"))]
    #[case("V_zv6ThCCtXWveQ8mPjs", None)]
    #[case("not base64!", None)]
    #[case("", None)]
    fn device_ids_need_128_bits(#[case] id: &str, #[case] canonical: Option<&str>) {
        assert_eq!(canonical_device_id(id).as_deref(), canonical);
    }

    #[rstest]
    #[case("Bearer abc", Some("abc"))]
    #[case("bearer: abc", Some("abc"))]
    #[case("BEARER   abc", Some("abc"))]
    #[case("Basic abc", None)]
    #[case("Bearer", None)]
    fn bearer_header_is_matched_case_insensitively(
        #[case] header: &str,
        #[case] token: Option<&str>,
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(header).unwrap(),
        );
        assert_eq!(bearer(&headers).as_deref(), token);
    }
}
