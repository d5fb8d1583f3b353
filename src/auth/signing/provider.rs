//! ring as jsonwebtoken's crypto provider: EdDSA signs and verifies (tollgate's access tokens);
//! RS256/384/512 and ES256/384 only verify (the ID tokens of sign-in providers, checked against
//! their published keys). HMAC and everything else is refused.

use std::sync::Once;

use jsonwebtoken::DecodingKeyKind;
use jsonwebtoken::{
    Algorithm,
    crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier},
};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, Ed25519KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};

/// ring as jsonwebtoken's crypto: EdDSA signing; EdDSA, RSA PKCS#1 and ECDSA verifying; every
/// other algorithm is an error.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| match alg {
        Algorithm::EdDSA => Ok(Box::new(RingSigner(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
                .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidEddsaKey)?,
        ))),
        _ => Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
    },
    verifier_factory: |alg, key| match (alg, key.kind()) {
        (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(bytes)) => {
            Ok(Box::new(RingVerifier(bytes.clone())))
        }
        (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512, kind) => {
            let DecodingKeyKind::RsaModulusExponent { n, e } = kind else {
                return Err(jsonwebtoken::errors::ErrorKind::InvalidRsaKey(String::new()).into());
            };
            Ok(Box::new(RsaVerifier {
                alg: *alg,
                n: n.clone(),
                e: e.clone(),
            }))
        }
        (Algorithm::ES256 | Algorithm::ES384, DecodingKeyKind::SecretOrDer(point)) => {
            Ok(Box::new(EcVerifier {
                alg: *alg,
                point: point.clone(),
            }))
        }
        _ => Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
    },
    jwk_utils: JwkUtils::new_unimplemented(),
};

struct RingSigner(Ed25519KeyPair);

impl signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct RingVerifier(Vec<u8>);

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// An RSA PKCS#1 v1.5 public key (a provider's `kty: RSA` key), 2048 to 8192 bits.
struct RsaVerifier {
    alg: Algorithm,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for RsaVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let params = match self.alg {
            Algorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &RSA_PKCS1_2048_8192_SHA384,
            _ => &RSA_PKCS1_2048_8192_SHA512,
        };
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(params, msg, signature)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RsaVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// An ECDSA public key (a provider's `kty: EC` key) as an uncompressed point; JWT signatures are
/// the fixed-width `r || s`.
struct EcVerifier {
    alg: Algorithm,
    point: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for EcVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let params: &dyn VerificationAlgorithm = match self.alg {
            Algorithm::ES256 => &ECDSA_P256_SHA256_FIXED,
            _ => &ECDSA_P384_SHA384_FIXED,
        };
        UnparsedPublicKey::new(params, &self.point)
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for EcVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Makes [`PROVIDER`] jsonwebtoken's, unless the process chose one already (an application that
/// mounts tollgate and uses jsonwebtoken itself: its provider then signs and verifies EdDSA).
pub(super) fn install_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}
