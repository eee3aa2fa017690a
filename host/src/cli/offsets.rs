//! `pgmorph offset get|set`: the connector's resume position, next to the slot's.

use pgmorph::config::Config;
use pgmorph::model::Lsn;
use pgmorph::source::setup;
use pgmorph::state::{control, owner};

use crate::{destination, source, OffsetAction};

/// Runs an offset subcommand.
pub async fn run(action: OffsetAction) -> anyhow::Result<()> {
    match action {
        OffsetAction::Get { config } => {
            let config = Config::load(&config)?;
            let dest = destination(&config).await?;
            let applied = control::offset(&dest, &config.name).await?;
            println!("applied on the destination  {}", show(applied));
            let src = source(&config).await?;
            let slot = setup::slot_info(&src, &config.slot_name()).await?;
            match slot {
                Some(s) => {
                    println!("slot confirmed on the source {}", show(s.confirmed_flush));
                    println!("slot in use                 {}", s.active);
                }
                None => println!("slot {} does not exist on the source", config.slot_name()),
            }
            Ok(())
        }
        OffsetAction::Set { config, lsn, yes } => {
            let config = Config::load(&config)?;
            let lsn: Lsn = lsn.parse()?;
            // The connector's lock first: a running connector's position is never moved.
            let dest = destination(&config).await?;
            owner::claim_for_command(&dest, &config.name).await?;
            let src = source(&config).await?;
            let slot_name = config.slot_name();
            let slot = setup::slot_info(&src, &slot_name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("slot {slot_name} does not exist on the source"))?;
            if slot.active {
                anyhow::bail!(
                    "slot {slot_name} is in use: stop the connector first (pgmorph stop)"
                );
            }
            let confirmed = slot.confirmed_flush.unwrap_or_default();
            if lsn < confirmed {
                anyhow::bail!(
                    "{lsn} is before the slot's confirmed position {confirmed}: the source no longer \
                     keeps those changes, so they cannot be replayed"
                );
            }
            if !yes {
                use std::io::Write;
                print!(
                    "WARNING: changes between the current position and {lsn} will never reach the \
                     destination. Continue? [y/N] "
                );
                std::io::stdout().flush()?;
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    anyhow::bail!("offset unchanged");
                }
            }
            // The destination's position moves first: the slot is never ahead of it.
            control::set_offset(&dest, &config.name, lsn).await?;
            if lsn > confirmed {
                src.execute(
                    "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                    &[&slot_name, &lsn.to_string()],
                )
                .await?;
            }
            println!("connector {} resumes after {lsn}", config.name);
            Ok(())
        }
    }
}

fn show(lsn: Option<Lsn>) -> String {
    lsn.map(|l| l.to_string()).unwrap_or_else(|| "-".into())
}
