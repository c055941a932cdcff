//! The command line's view of the settings: the flags as [`Overrides`] for
//! [`stockade_app::Settings::resolve`], which does the rest (the settings types live in the
//! application crate, so `App::build` takes them without clap).

pub use stockade_app::settings::*;

use crate::cli::GlobalArgs;
use crate::exit::Failure;

/// Defaults, then stockade.toml, then STOCKADE_* variables, then these flags.
pub fn resolve(args: &GlobalArgs) -> Result<Settings, Failure> {
    Ok(Settings::resolve(&Overrides {
        env: args.env.clone(),
        data_dir: args.data_dir.clone(),
        database_url: args.database_url.clone(),
        config: args.config.clone(),
    })?)
}
