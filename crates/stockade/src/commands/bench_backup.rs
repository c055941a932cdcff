//! `stockade bench backup` (placeholder until the seeder is wired).

use crate::cli_backup::BenchBackupArgs;
use crate::exit::Failure;

pub async fn run(_args: BenchBackupArgs) -> Result<(), Failure> {
    Err(Failure::runtime("not yet"))
}
