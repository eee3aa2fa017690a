//! `--preset`: named sets of sizes and parallelism. A preset fills in the options not given on
//! the command line; options given there win.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, ValueEnum};

use crate::cli::Args;

/// A named set of sizes and parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// A machine with many cores: tables big enough to be split into page ranges
    /// (`public.mixed` 2,000,000 rows, `pgbench -i -s 20`), `--parallel` and the pgbench
    /// clients at the core count, pgmorph's `apply.parallel` at half of it (at most 8), and
    /// backlogs ten times the default.
    ManyCore,
}

/// Parses the command line and applies `--preset`, if any.
pub fn parse() -> Args {
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(preset) = args.preset {
        preset.apply(&mut args, |id| given(&matches, id));
    }
    args
}

fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

impl Preset {
    /// Sets what the preset chooses on `args`, except the options `given` says were given.
    fn apply(self, args: &mut Args, given: impl Fn(&str) -> bool) {
        match self {
            Preset::ManyCore => {
                let cores = std::thread::available_parallelism().map_or(16, |n| n.get());
                let cores = cores as u64;
                let set = |id: &str, field: &mut u64, value: u64| {
                    if !given(id) {
                        *field = value;
                    }
                };
                set("rows", &mut args.rows, 2_000_000);
                set("cdc_inserts", &mut args.cdc_inserts, 1_000_000);
                set("cdc_updates", &mut args.cdc_updates, 200_000);
                set("cdc_deletes", &mut args.cdc_deletes, 200_000);
                set("pgbench_tx", &mut args.pgbench_tx, 40_000);
                set("pgbench_clients", &mut args.pgbench_clients, cores);
                set("bigtx_rows", &mut args.bigtx_rows, 1_000_000);
                if !given("pgbench_scale") {
                    args.pgbench_scale = 20;
                }
                if !given("parallel") {
                    args.parallel = cores as usize;
                }
                if !given("apply_parallel") {
                    args.apply_parallel = (cores as usize / 2).clamp(1, 8);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn many_core_fills_in_what_the_command_line_left_out() {
        let argv = ["pgmorph-bench", "--preset", "many-core", "--rows", "5000"];
        let matches = Args::command().get_matches_from(argv);
        let mut args = Args::try_parse_from(argv).unwrap();
        Preset::ManyCore.apply(&mut args, |id| given(&matches, id));
        assert_eq!(args.rows, 5000, "given on the command line");
        assert_eq!(args.pgbench_scale, 20);
        assert_eq!(args.cdc_inserts, 1_000_000);
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(args.parallel, cores);
        assert_eq!(args.pgbench_clients, cores as u64);
        assert_eq!(args.apply_parallel, (cores / 2).clamp(1, 8));
    }
}
