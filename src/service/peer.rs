//! Who is at the other end of a request, as the transport proved it: the client certificate of
//! a mutual-TLS connection (`serve --tls-client-ca`). Principals are bound to its fingerprint.

use sha2::{Digest, Sha256};
use tonic::Request;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::audit::hex;

/// The SHA-256 fingerprint of a certificate: 64 lower-case hexadecimal digits over the DER
/// bytes of the (leaf) certificate — what `openssl x509 -noout -fingerprint -sha256` prints,
/// without the colons, in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertFingerprint(String);

impl CertFingerprint {
    /// The fingerprint of the certificate whose DER encoding is `der`.
    pub fn of_der(der: &[u8]) -> Self {
        Self(hex::encode(&Sha256::digest(der)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The fingerprint of the certificate the client presented on this request's connection.
///
/// `Some` only under mutual TLS, where the handshake has already verified that the certificate
/// chains to the configured client CA (a client without one, or with one from another CA,
/// never gets a request through). `None` over plaintext and over TLS without a client CA
/// (the server then asks for no certificate).
pub fn client_fingerprint<T>(request: &Request<T>) -> Option<CertFingerprint> {
    let chain = request.peer_certs()?;
    chain.first().map(|leaf| CertFingerprint::of_der(leaf.as_ref()))
}

/// The SHA-256 of the client certificate (its DER bytes) of the connection that carried a
/// request, from the request's extensions (as a tower layer sees them): what
/// [`client_fingerprint`] says, as bytes.
pub fn client_certificate_digest(extensions: &http::Extensions) -> Option<[u8; 32]> {
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let chain = info.peer_certs()?;
    chain.first().map(|leaf| Sha256::digest(leaf.as_ref()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_der_bytes_in_lower_case_hex() {
        // FIPS 180-2's example: SHA-256("abc").
        let fingerprint = CertFingerprint::of_der(b"abc");
        assert_eq!(fingerprint.as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(fingerprint.to_string(), fingerprint.as_str());
    }

    #[test]
    fn a_request_without_tls_has_no_fingerprint() {
        assert_eq!(client_fingerprint(&Request::new(())), None);
    }
}
