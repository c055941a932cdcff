//! The frame of the pages shown before or outside a console session — sign-in, the code
//! prompt, TOTP enrollment, recovery codes, the idle lock, signed out, the ban page and
//! the error page (`templates/auth_base.html`): the environment banner, the language
//! switch and the request's language.
//!
//! Invariants: every text on these pages comes from the catalogue in the request's
//! language (the `stockade_lang` cookie, else `Accept-Language`, else English; a signed-in
//! user's stored choice is written into that cookie at sign-in); the switch returns only
//! to the page it was on, and is left off pages that must not be reloaded (recovery
//! codes) or cannot be (the ban page).

use axum::http::HeaderMap;
use stockade_core::Environment;

use crate::console::{encode, env_key};
use crate::i18n::Lang;

/// The banner, the language and the way back for the language switch.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub lang: Lang,
    pub env_text: &'static str,
    pub env_class: &'static str,
    /// The page the language switch comes back to; `None` hides the switch.
    pub here: Option<&'static str>,
}

impl Frame {
    pub fn new(lang: Lang, env: Environment, here: Option<&'static str>) -> Frame {
        let (key, env_class) = env_key(env);
        Frame {
            lang,
            env_text: lang.t(key),
            env_class,
            here,
        }
    }

    /// The frame of a request (its language from the cookie or `Accept-Language`).
    pub fn of(headers: &HeaderMap, env: Environment, here: Option<&'static str>) -> Frame {
        Frame::new(Lang::of(headers), env, here)
    }

    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }

    /// The language switch's link (`None` where the page hides it), the other
    /// language's code and its own name.
    pub fn switch(&self) -> Option<(String, &'static str, &'static str)> {
        let (code, name) = match self.lang {
            Lang::En => ("zh", "中文"),
            Lang::Zh => ("en", "English"),
        };
        self.here.map(|here| {
            (
                format!("/lang?set={code}&back={}", encode(here)),
                code,
                name,
            )
        })
    }
}
