//! `sweep serve`: the web view, until Ctrl-C.

use super::output::note;
use crate::cli::ServeArgs;
use sweep::Result;
use sweep::serve::{ServeOptions, serve as run_server};

/// `sweep serve`.
pub fn serve(args: ServeArgs) -> Result<i32> {
    let options = ServeOptions {
        db: args.db.db,
        bind: args.bind,
        token: args.token,
    };
    let db = options.db.to_string();
    run_server(options, |url| {
        // The one place the token is shown: the URL to open.
        println!("{url}");
        note!("serving {db} read-only; Ctrl-C stops");
    })?;
    Ok(0)
}
