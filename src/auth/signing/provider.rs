//! ring's Ed25519 as jsonwebtoken's crypto provider: EdDSA only.

use std::sync::Once;

use jsonwebtoken::{
    Algorithm,
    crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier},
};
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};

/// ring's Ed25519 as jsonwebtoken's crypto: EdDSA only; every other algorithm is an error.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| match alg {
        Algorithm::EdDSA => Ok(Box::new(RingSigner(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
                .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidEddsaKey)?,
        ))),
        _ => Err(jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into()),
    },
    verifier_factory: |alg, key| match alg {
        Algorithm::EdDSA => Ok(Box::new(RingVerifier(key.as_bytes().to_vec()))),
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

/// Makes [`PROVIDER`] jsonwebtoken's, unless the process chose one already (an application that
/// mounts tollgate and uses jsonwebtoken itself: its provider then signs and verifies EdDSA).
pub(super) fn install_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}
