//! Secret-holding types: key material, tokens, app secrets.
//!
//! Invariant: a secret never prints (no `Display`, no `Serialize`, `Debug` is
//! `[secret]`) and its memory is wiped when it is dropped. The value is reached only
//! through [`Secret::expose_secret`].

use std::fmt;

use zeroize::Zeroize;

/// A secret value of type `T`, zeroized on drop.
#[derive(Clone)]
pub struct Secret<T: Zeroize>(T);

/// Secret bytes (key material).
pub type SecretBytes = Secret<Vec<u8>>;
/// A secret string (tokens, passwords, app secrets).
pub type SecretString = Secret<String>;

impl<T: Zeroize> Secret<T> {
    /// Take ownership of a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret value; each call site is where the secret is used.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let token = SecretString::from("Atza|super-secret-refresh-token".to_owned());
        let shown = format!("{token:?} {:?}", Some(&token));
        assert!(!shown.contains("Atza"), "{shown}");
        assert_eq!(token.expose_secret(), "Atza|super-secret-refresh-token");
    }
}
