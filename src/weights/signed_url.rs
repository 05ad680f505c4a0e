//! URLs that carry a credential in their query string (presigned S3/GCS
//! URLs, Azure SAS tokens, CloudFront signatures, `?token=`): refused as
//! weights sources, because imgbake would have to write them into
//! imgbake.lock and the image's weights manifest; and cut out of every
//! message we print, because a redirect (the Hugging Face hub sends LFS files
//! to a signed CDN URL) can put one into an HTTP error's text.

/// Query parameters that are, or unlock, a credential (compared without case).
const CREDENTIAL_PARAMETERS: &[&str] = &[
    // S3 SigV4 and SigV2 presigned URLs.
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "signature",
    // GCS signed URLs (V4 and V2).
    "x-goog-signature",
    "x-goog-credential",
    "googleaccessid",
    // Azure shared access signatures.
    "sig",
    // CloudFront signed URLs.
    "key-pair-id",
    "policy",
    // Plain tokens and keys.
    "token",
    "access_token",
    "auth",
    "api_key",
    "apikey",
];

/// What replaces a query string in printed text.
pub const REDACTED_QUERY: &str = "?<redacted>";

/// The first credential-carrying query parameter of `url`, as written.
pub fn credential_parameter(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    query.split('&').map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name)).find(|name| {
        let name = name.to_ascii_lowercase();
        CREDENTIAL_PARAMETERS.contains(&name.as_str())
    })
}

/// `text` with the query string of every `scheme://` URL in it replaced by
/// [`REDACTED_QUERY`]. A URL ends at whitespace, a quote, a closing bracket
/// or a comma, and punctuation that ends a sentence (`:` `.` `;`) is left
/// after it. Redacting twice changes nothing more.
pub fn redact_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url_on) = rest.split_at(at);
        out.push_str(before);
        let end = url_on
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ']' | '"' | '\'' | '`' | ','))
            .unwrap_or(url_on.len());
        let end = url_on[..end].trim_end_matches([':', '.', ';']).len();
        let (url, after) = url_on.split_at(end);
        match url.split_once('?') {
            Some((path, _)) => {
                out.push_str(path);
                out.push_str(REDACTED_QUERY);
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_and_sas_urls_are_recognised_and_plain_ones_are_not() {
        let s3 = "https://b.s3.amazonaws.com/m.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F&X-Amz-Signature=ab";
        assert_eq!(credential_parameter(s3), Some("X-Amz-Credential"));
        let sas = "https://acct.blob.core.windows.net/c/m.bin?sv=2022-11-02&se=2026-01-01&sig=abc%3D";
        assert_eq!(credential_parameter(sas), Some("sig"));
        let cdn = "https://cdn.example/m.bin?Expires=1&Signature=x&Key-Pair-Id=K";
        assert_eq!(credential_parameter(cdn), Some("Signature"));
        assert_eq!(credential_parameter("https://h/m.bin?token"), Some("token"));
        assert_eq!(credential_parameter("https://h/m.bin?download=true&v=2#sig=1"), None);
        assert_eq!(credential_parameter("https://h/m.bin"), None);
        assert_eq!(credential_parameter("https://h/signature.bin"), None);
    }

    #[test]
    fn every_query_string_in_a_message_is_cut_out() {
        let message = "error sending request for url (https://cdn-lfs.hf.co/repos/a/b?Expires=1&Signature=SECRET&Key-Pair-Id=K): \
                       connection reset; then http://127.0.0.1:9/x?sig=SECRET2 and s3://bucket/key";
        let redacted = redact_queries(message);
        assert!(!redacted.contains("SECRET"), "{redacted}");
        assert_eq!(
            redacted,
            "error sending request for url (https://cdn-lfs.hf.co/repos/a/b?<redacted>): \
             connection reset; then http://127.0.0.1:9/x?<redacted> and s3://bucket/key"
        );
        assert_eq!(redact_queries("no urls here? none"), "no urls here? none");
        let sentence = "m.bin from https://h/m.bin?sig=S: not found.";
        assert_eq!(redact_queries(sentence), "m.bin from https://h/m.bin?<redacted>: not found.");
        assert_eq!(redact_queries(&redact_queries(sentence)), redact_queries(sentence));
        let json = r#"{"url":"https://h/m.bin?sig=S","reason":"x (https://h/m.bin?sig=S)"}"#;
        assert_eq!(
            redact_queries(json),
            r#"{"url":"https://h/m.bin?<redacted>","reason":"x (https://h/m.bin?<redacted>)"}"#
        );
    }
}
