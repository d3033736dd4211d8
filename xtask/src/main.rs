//! `cargo xtask site [--release] [--no-server]`: builds the tokengate site exactly as
//! `cargo leptos build` does (same cargo arguments, same `LEPTOS_*` environment, same
//! file names under `target/site/pkg`), without having to compile cargo-leptos itself:
//!
//! 1. `tokengate-frontend` for wasm32-unknown-unknown (profile dev, or `wasm-release`);
//! 2. wasm-bindgen (`--target web`) through `wasm-bindgen-cli-support`, pinned to the
//!    lockfile's wasm-bindgen version (checked before anything is built), then
//!    `tokengate_bg.wasm` renamed to `tokengate.wasm` as cargo-leptos does;
//! 3. with `--release`, `node_modules/.bin/wasm-opt -Oz` (npm binaryen, as cargo-leptos);
//! 4. `style/main.css` to `pkg/tokengate.css` and `public/*` into the site root;
//! 5. the `tokengate-server` binary (dev, or `--release`).
//!
//! The values mirror `[[workspace.metadata.leptos]]` in the workspace Cargo.toml; keep them
//! in step (a test below compares them). `cargo leptos watch` remains the development loop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `name` in the leptos metadata: file names under `pkg/` and `LEPTOS_OUTPUT_NAME`.
const OUTPUT_NAME: &str = "tokengate";
const BIN_PACKAGE: &str = "tokengate-server";
const LIB_PACKAGE: &str = "tokengate-frontend";
const LIB_DIR: &str = "frontend";
const BIN_DIR: &str = "server";
/// Relative to the workspace root, where the server looks by default (`site_root`).
const SITE_ROOT: &str = "target/site";
const SITE_PKG_DIR: &str = "pkg";
const SITE_ADDR: &str = "127.0.0.1:3000";
const RELOAD_PORT: &str = "3001";
const STYLE_FILE: &str = "style/main.css";
const ASSETS_DIR: &str = "public";
const LIB_PROFILE_RELEASE: &str = "wasm-release";
/// The version of `wasm-bindgen-cli-support` this crate is pinned to (xtask/Cargo.toml).
const BINDGEN_PIN: &str = "0.2.130";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("site") => {
            let mut release = false;
            let mut server = true;
            for a in &args[1..] {
                match a.as_str() {
                    "--release" => release = true,
                    "--no-server" => server = false,
                    other => bail!("unknown option {other}\n{USAGE}"),
                }
            }
            build(&workspace_root()?, release, server)
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2)
        }
    }
}

const USAGE: &str = "usage: cargo xtask site [--release] [--no-server]\n\
  Builds target/site (wasm, JS, CSS, assets) and the tokengate-server binary like\n\
  `cargo leptos build [--release]`.";

fn workspace_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// The environment cargo-leptos 0.3 sets for both cargo builds (`Project::to_envs`); no
/// RUSTFLAGS because the metadata sets `disable-erase-components`.
fn leptos_env(release: bool) -> Vec<(&'static str, String)> {
    vec![
        ("LEPTOS_OUTPUT_NAME", OUTPUT_NAME.into()),
        ("LEPTOS_SITE_ROOT", SITE_ROOT.into()),
        ("LEPTOS_SITE_PKG_DIR", SITE_PKG_DIR.into()),
        ("LEPTOS_SITE_ADDR", SITE_ADDR.into()),
        ("LEPTOS_RELOAD_PORT", RELOAD_PORT.into()),
        ("LEPTOS_LIB_DIR", LIB_DIR.into()),
        ("LEPTOS_BIN_DIR", BIN_DIR.into()),
        ("LEPTOS_JS_MINIFY", release.to_string()),
        ("LEPTOS_HASH_FILES", "false".into()),
    ]
}

/// The version of `package` in Cargo.lock text (the first entry with that exact name).
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let want = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            let v = lines.next()?.trim().strip_prefix("version = \"")?;
            return v.strip_suffix('"').map(str::to_string);
        }
    }
    None
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

fn cargo(root: &Path, args: &[&str], release: bool) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(args).envs(leptos_env(release));
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn build(root: &Path, release: bool, server: bool) -> Result<()> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let locked = locked_version(&lock, "wasm-bindgen").context("no wasm-bindgen in Cargo.lock")?;
    if locked != BINDGEN_PIN {
        bail!(
            "Cargo.lock has wasm-bindgen {locked} but xtask bundles wasm-bindgen-cli-support \
             {BINDGEN_PIN}: set `wasm-bindgen-cli-support = \"={locked}\"` in xtask/Cargo.toml \
             and BINDGEN_PIN in xtask/src/main.rs"
        );
    }
    let target = target_dir(root);
    let target_arg = format!("--target-dir={}", target.display());

    // 1. The wasm, with cargo-leptos's arguments.
    let mut front = vec![
        "build",
        "--package",
        LIB_PACKAGE,
        "--lib",
        &target_arg,
        "--target=wasm32-unknown-unknown",
    ];
    let profile_arg = format!("--profile={LIB_PROFILE_RELEASE}");
    if release {
        front.push(&profile_arg);
    }
    cargo(root, &front, release)?;
    let profile_dir = if release {
        LIB_PROFILE_RELEASE
    } else {
        "debug"
    };
    let wasm_in = target
        .join("wasm32-unknown-unknown")
        .join(profile_dir)
        .join(format!("{}.wasm", LIB_PACKAGE.replace('-', "_")));

    // 2. wasm-bindgen --target=web --out-name=tokengate --out-dir=target/site/pkg
    let site = root.join(SITE_ROOT);
    let pkg = site.join(SITE_PKG_DIR);
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;
    eprintln!(
        "xtask: wasm-bindgen {} -> {}",
        wasm_in.display(),
        pkg.display()
    );
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm_in)
        .web(true)?
        .out_name(OUTPUT_NAME)
        // The defaults of the wasm-bindgen command line cargo-leptos runs.
        .typescript(true)
        .omit_default_module_path(false)
        .generate(&pkg)
        .context("wasm-bindgen")?;
    let wasm_out = pkg.join(format!("{OUTPUT_NAME}.wasm"));
    std::fs::rename(pkg.join(format!("{OUTPUT_NAME}_bg.wasm")), &wasm_out)
        .context("renaming the bindgen output")?;

    // 3. wasm-opt, npm's binaryen (Debian's breaks hydration).
    if release {
        let wasm_opt = root.join("node_modules/.bin/wasm-opt");
        if !wasm_opt.exists() {
            bail!(
                "{} is missing: run `npm install` (scripts/setup.sh does)",
                wasm_opt.display()
            );
        }
        let out = wasm_out.to_string_lossy().into_owned();
        let args = [
            "-Oz",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            &out,
            "-o",
            &out,
        ];
        eprintln!("xtask: wasm-opt {}", args.join(" "));
        let status = Command::new(&wasm_opt)
            .args(args)
            .status()
            .context("running wasm-opt")?;
        if !status.success() {
            bail!("wasm-opt failed ({status})");
        }
    }

    // 4. Style and assets. cargo-leptos passes the CSS through lightningcss for the
    // browserslist "defaults"; main.css uses nothing those browsers need prefixed or
    // lowered, so a copy serves the same rules.
    std::fs::copy(
        root.join(STYLE_FILE),
        pkg.join(format!("{OUTPUT_NAME}.css")),
    )
    .context("copying the style file")?;
    copy_dir(&root.join(ASSETS_DIR), &site)?;

    // 5. The server, built with the same environment.
    if server {
        let mut args = vec![
            "build",
            "--package",
            BIN_PACKAGE,
            "--bin",
            BIN_PACKAGE,
            &target_arg,
        ];
        if release {
            args.push("--release");
        }
        cargo(root, &args, release)?;
    }
    eprintln!("xtask: site ready in {}", site.display());
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str) -> String {
        std::fs::read_to_string(workspace_root().unwrap().join(path)).unwrap()
    }

    #[test]
    fn pinned_bindgen_matches_the_lockfile() {
        let lock = read("Cargo.lock");
        assert_eq!(
            locked_version(&lock, "wasm-bindgen").as_deref(),
            Some(BINDGEN_PIN)
        );
        assert_eq!(
            locked_version(&lock, "wasm-bindgen-cli-support").as_deref(),
            Some(BINDGEN_PIN)
        );
    }

    #[test]
    fn locked_version_reads_exact_names() {
        let lock = "[[package]]\nname = \"wasm-bindgen-shared\"\nversion = \"9.9.9\"\n\n\
                    [[package]]\nname = \"wasm-bindgen\"\nversion = \"0.2.1\"\n";
        assert_eq!(
            locked_version(lock, "wasm-bindgen").as_deref(),
            Some("0.2.1")
        );
        assert_eq!(locked_version(lock, "walrus"), None);
    }

    /// The constants mirror `[[workspace.metadata.leptos]]`; a change there fails here.
    #[test]
    fn constants_match_the_leptos_metadata() {
        let toml = read("Cargo.toml");
        let meta = toml.split("[[workspace.metadata.leptos]]").nth(1).unwrap();
        for (key, value) in [
            ("name", OUTPUT_NAME),
            ("bin-package", BIN_PACKAGE),
            ("lib-package", LIB_PACKAGE),
            ("site-root", SITE_ROOT),
            ("site-pkg-dir", SITE_PKG_DIR),
            ("style-file", STYLE_FILE),
            ("assets-dir", ASSETS_DIR),
            ("site-addr", SITE_ADDR),
            ("lib-profile-release", LIB_PROFILE_RELEASE),
        ] {
            let line = format!("{key} = \"{value}\"");
            assert!(
                meta.lines().any(|l| l.trim() == line),
                "metadata lacks `{line}`"
            );
        }
        assert!(
            meta.lines()
                .any(|l| l.trim() == format!("reload-port = {RELOAD_PORT}"))
        );
        assert!(
            meta.lines()
                .any(|l| l.trim() == "disable-erase-components = true")
        );
        assert!(
            meta.lines()
                .any(|l| l.trim() == "lib-default-features = true")
        );
        assert!(
            meta.lines()
                .any(|l| l.trim() == "bin-default-features = true")
        );
    }
}
