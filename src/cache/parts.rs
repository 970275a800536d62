//! Parts of a body, fetched with range requests for the readers far from
//! its front (see [`download`](super::download) for when).
//!
//! Every range request carries `If-Range` with the validator of the
//! response the download began with, so the origin sends the part only if
//! the body is still the same; otherwise it sends the whole new body, which
//! is never spliced into the old one: the download fails, its readers get
//! an error, and the next open fetches the new body. A 206 is checked
//! against what was asked (its `Content-Range` and its ETag); a 200 that
//! carries the same validator means the origin does not do ranges, and the
//! front then fetches the whole body.

use std::sync::Arc;

use headers::{ContentRange, HeaderMapExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use url::Url;

use super::download::{Access, PartSource};
use super::{Cache, CacheError, Download, DownloadError};
use crate::config::Origin;
use crate::origin::{BodyStream, Head};

/// What a response to a range request turned out to be.
pub(super) enum PartAnswer {
    /// The part asked for.
    Part(BodyStream),
    /// The whole body, unchanged: the origin ignores ranges.
    Whole(BodyStream),
}

#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("{url} changed on the origin while it was read; open it again")]
    Changed { url: String },
    #[error("{url}: the origin answered a range request with {what}")]
    Invalid { url: String, what: String },
}

impl Cache {
    /// Bytes `[offset, offset + len)` of a download that were not on disk
    /// when asked: a read the front will not bring soon fetches its part,
    /// any other waits for the front or for a part already asked for.
    pub async fn read_body(
        self: &Arc<Self>,
        download: &Arc<Download>,
        access: Access,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, DownloadError> {
        let mut updates = download.progress_updates();
        loop {
            updates.borrow_and_update();
            if let Some(read) = download.try_read(access, offset, len) {
                return read;
            }
            if download.needs_part(access, offset, len)
                && let Some((start, end)) = download.plan_part(offset, len)
            {
                self.fetch_part(Arc::clone(download), start, end);
            }
            if updates.changed().await.is_err() {
                return Err(download.failed());
            }
        }
    }

    /// Fetches bytes `[start, end)` of a download into its file.
    fn fetch_part(self: &Arc<Self>, download: Arc<Download>, start: u64, end: u64) {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let fetched = cache.fill_part(&download, start, end).await;
            download.part_ended(start, end);
            match fetched {
                Ok(true) => {}
                Ok(false) => download.stop_parts(),
                Err(error) => {
                    tracing::warn!("part {start}-{end} of {}: {error}", download.url);
                    download.fail(error.to_string());
                }
            }
        });
    }

    /// False when the origin sent the whole body instead of the part.
    async fn fill_part(
        &self,
        download: &Download,
        start: u64,
        end: u64,
    ) -> Result<bool, CacheError> {
        let Some(source) = download
            .part_source()
            .filter(|_| download.fetched_in_parts())
        else {
            return Ok(true);
        };
        let mut body = match self
            .request_part(source, download.size, start, Some(end))
            .await?
        {
            PartAnswer::Part(body) => body,
            PartAnswer::Whole(_) => {
                tracing::info!("{}: the origin does not send parts", download.url);
                return Ok(false);
            }
        };
        let mut at = start;
        while let Some(chunk) = body.next_chunk().await? {
            if download.progress().phase != super::Phase::Running {
                break;
            }
            download.write_part(at, &chunk)?;
            at += chunk.len() as u64;
        }
        Ok(true)
    }

    /// Asks for bytes `[start, end)` (to the end of the body without `end`)
    /// of a body of `size` bytes, if it is still the one `source` names.
    pub(super) async fn request_part(
        &self,
        source: &PartSource,
        size: Option<u64>,
        start: u64,
        end: Option<u64>,
    ) -> Result<PartAnswer, CacheError> {
        let PartSource {
            origin,
            url,
            validator,
        } = source;
        let mut headers = HeaderMap::new();
        let range = match end {
            Some(end) => format!("bytes={start}-{}", end - 1),
            None => format!("bytes={start}-"),
        };
        headers.insert(
            header::RANGE,
            HeaderValue::from_str(&range).expect("digits are a valid header value"),
        );
        headers.insert(header::IF_RANGE, validator.clone());
        // Its own deadline, not a share of the open's: a random reader may
        // ask for thousands of parts in a few seconds.
        let deadline = tokio::time::Instant::now() + origin.timeout;
        let body = self.origin.get(origin, url, headers, deadline).await?;
        let head = &body.head;
        match head.status {
            StatusCode::PARTIAL_CONTENT => {
                check_part(head, validator, start, end, size)?;
                Ok(PartAnswer::Part(body))
            }
            StatusCode::OK if same_validator(&head.headers, validator) => {
                Ok(PartAnswer::Whole(body))
            }
            StatusCode::OK | StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => {
                Err(PartError::Changed {
                    url: url.to_string(),
                }
                .into())
            }
            status => Err(CacheError::Status {
                url: url.to_string(),
                status,
            }),
        }
    }
}

/// What to send as `If-Range` for a response, if it may be fetched in
/// parts: a length, no content coding, ranges not refused, and a strong
/// validator (RFC 9110 §13.1.5).
pub(super) fn part_source(origin: &Arc<Origin>, url: &Url, head: &Head) -> Option<PartSource> {
    let headers = &head.headers;
    head.content_length()?;
    let refused = headers
        .get(header::ACCEPT_RANGES)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"none"));
    let coded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if head.status != StatusCode::OK || refused || coded {
        return None;
    }
    let strong_etag = headers
        .get(header::ETAG)
        .filter(|etag| etag.as_bytes().starts_with(b"\""));
    let validator = strong_etag.or_else(|| headers.get(header::LAST_MODIFIED))?;
    Some(PartSource {
        origin: Arc::clone(origin),
        url: url.clone(),
        validator: validator.clone(),
    })
}

/// Whether a response carries the validator a download began with.
fn same_validator(headers: &HeaderMap, validator: &HeaderValue) -> bool {
    [header::ETAG, header::LAST_MODIFIED]
        .iter()
        .any(|name| headers.get(name) == Some(validator))
}

/// A 206 must hold exactly the bytes asked for, of a body of the known
/// size, and name the same ETag if it names one.
fn check_part(
    head: &Head,
    validator: &HeaderValue,
    start: u64,
    end: Option<u64>,
    size: Option<u64>,
) -> Result<(), PartError> {
    let invalid = |what: String| PartError::Invalid {
        url: head.url.to_string(),
        what,
    };
    if let Some(etag) = head.headers.get(header::ETAG)
        && validator.as_bytes().starts_with(b"\"")
        && etag != validator
    {
        return Err(PartError::Changed {
            url: head.url.to_string(),
        });
    }
    let Some(range) = head.headers.typed_get::<ContentRange>() else {
        return Err(invalid("206 without a valid Content-Range".into()));
    };
    let (Some((first, last)), Some(total)) = (range.bytes_range(), range.bytes_len()) else {
        return Err(invalid(format!("an incomplete Content-Range ({range:?})")));
    };
    if size.is_some_and(|size| size != total) {
        return Err(PartError::Changed {
            url: head.url.to_string(),
        });
    }
    let expected_last = end.unwrap_or(total).min(total) - 1;
    if first != start || last != expected_last {
        return Err(invalid(format!(
            "bytes {first}-{last}, not {start}-{expected_last}"
        )));
    }
    if head.content_length() != Some(last - first + 1) {
        return Err(invalid("a length that is not the range's".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)]) -> Head {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Head {
            url: Url::parse("http://downloads.example.org/f").unwrap(),
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            request_headers: HeaderMap::new(),
            redirects: Vec::new(),
        }
    }

    fn origin() -> Arc<Origin> {
        Arc::new(Origin::with_defaults(
            "o".into(),
            Url::parse("http://downloads.example.org/").unwrap(),
        ))
    }

    #[test]
    fn only_a_plain_body_with_a_length_and_a_strong_validator_comes_in_parts() {
        let url = Url::parse("http://downloads.example.org/f").unwrap();
        let ok = |headers: &[(&str, &str)]| part_source(&origin(), &url, &head(200, headers));
        let etag = ok(&[("content-length", "10"), ("etag", "\"a\"")]).unwrap();
        assert_eq!(etag.validator, "\"a\"");
        let date = "Tue, 01 Dec 2026 10:00:00 GMT";
        let dated = ok(&[
            ("content-length", "10"),
            ("etag", "W/\"a\""),
            ("last-modified", date),
        ]);
        assert_eq!(dated.unwrap().validator, date);
        assert!(ok(&[("content-length", "10"), ("etag", "W/\"a\"")]).is_none());
        assert!(ok(&[("etag", "\"a\"")]).is_none(), "no length");
        assert!(
            ok(&[
                ("content-length", "10"),
                ("etag", "\"a\""),
                ("accept-ranges", "none")
            ])
            .is_none()
        );
        assert!(
            ok(&[
                ("content-length", "10"),
                ("etag", "\"a\""),
                ("content-encoding", "gzip")
            ])
            .is_none()
        );
    }

    #[test]
    fn a_part_must_be_exactly_what_was_asked() {
        let etag = HeaderValue::from_static("\"a\"");
        let part = |headers: &[(&str, &str)], end| {
            check_part(&head(206, headers), &etag, 100, end, Some(1000))
        };
        let good = [
            ("content-range", "bytes 100-199/1000"),
            ("content-length", "100"),
        ];
        assert!(part(&good, Some(200)).is_ok());
        let to_end = [
            ("content-range", "bytes 100-999/1000"),
            ("content-length", "900"),
        ];
        assert!(part(&to_end, None).is_ok());

        let other_etag = [good[0], good[1], ("etag", "\"b\"")];
        assert!(matches!(
            part(&other_etag, Some(200)),
            Err(PartError::Changed { .. })
        ));
        let other_size = [
            ("content-range", "bytes 100-199/2000"),
            ("content-length", "100"),
        ];
        assert!(matches!(
            part(&other_size, Some(200)),
            Err(PartError::Changed { .. })
        ));
        for bad in [
            vec![("content-length", "100")],
            vec![
                ("content-range", "bytes 0-99/1000"),
                ("content-length", "100"),
            ],
            vec![
                ("content-range", "bytes 100-150/1000"),
                ("content-length", "51"),
            ],
            vec![("content-range", "bytes */1000"), ("content-length", "0")],
            vec![
                ("content-range", "bytes 100-199/1000"),
                ("content-length", "99"),
            ],
            vec![("content-range", "garbage"), ("content-length", "100")],
        ] {
            assert!(
                matches!(part(&bad, Some(200)), Err(PartError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_whole_body_with_the_same_validator_is_the_same_body() {
        let etag = HeaderValue::from_static("\"a\"");
        assert!(same_validator(
            &head(200, &[("etag", "\"a\"")]).headers,
            &etag
        ));
        assert!(!same_validator(
            &head(200, &[("etag", "\"b\"")]).headers,
            &etag
        ));
        assert!(!same_validator(&head(200, &[]).headers, &etag));
    }
}
