//! DKIM signing (RFC 6376; Ed25519 per RFC 8463) with mail-auth on ring.
//!
//! Keys are loaded once at start ([`DkimSigners::load`]); each is checked by signing a test
//! message and verifying it against its own public key. Messages are signed by From domain
//! (exact match); two keys for one domain give two signatures (dual RSA + Ed25519 signing).
//! [`SignPool`] runs the signing on dedicated threads behind a bounded queue.
//!
//! ## Layout
//! - [`config`] — [`DkimKeyConfig`], one `[[dkim]]` entry; [`DEFAULT_SIGNED_HEADERS`].
//! - `key` — PEM reading, algorithm detection, RSA size limits ([`RSA_BITS`]), permission warning.
//! - [`signer`] — [`DkimSigners`]: load + self-check, `sign` / `sign_message`.
//! - `selfcheck` — the start-up round trip through mail-auth's verifier (no DNS).
//! - [`pool`] — [`SignPool`]: OS threads fed by a bounded crossbeam channel.
//! - [`keygen`] — [`generate`] for `volley dkim keygen`.
//! - [`record`] — [`DkimPublicKey`]: DNS name, TXT record, 255-byte split.
//! - [`error`] — [`DkimError`].

pub mod config;
pub mod error;
mod key;
pub mod keygen;
pub mod pool;
pub mod record;
mod selfcheck;
pub mod signer;

pub use config::{DkimAlgorithm, DkimCanonicalization, DkimKeyConfig, DEFAULT_SIGNED_HEADERS};
pub use error::DkimError;
pub use key::RSA_BITS;
pub use keygen::{generate, GeneratedKey, KeyAlgorithm, DEFAULT_RSA_BITS};
pub use pool::{default_threads, Closed, SignPool, WorkersPanicked};
pub use record::{split_txt, DkimPublicKey, TXT_STRING_MAX};
pub use signer::DkimSigners;
