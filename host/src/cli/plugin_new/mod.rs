//! `pgmorph plugin new`: scaffolds a plugin in Rust, Python or JavaScript that builds, passes
//! `pgmorph plugin check` and has unit tests, as it is.

mod templates;

use std::path::{Path, PathBuf};

/// The plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate depending on `pgmorph-plugin-sdk`, built with cargo for `wasm32-wasip2`.
    Rust,
    /// A `plugin.py` built with the Python SDK (`sdk-python/`, componentize-py).
    Python,
    /// A `plugin.js` built with the JavaScript SDK (`sdk-js/`, componentize-js).
    Js,
}

/// What `pgmorph plugin new` writes.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The plugin's name: a crate name and file stem (`[a-z][a-z0-9_-]*`).
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// Its directory (created; must not exist or be empty).
    pub dir: PathBuf,
    /// Where the SDK is: `--sdk-path`, else the source tree pgmorph was built from.
    pub sdk_path: Option<PathBuf>,
    /// A git URL to depend on the Rust SDK from, instead of a path.
    pub sdk_git: Option<String>,
}

/// A plugin could not be scaffolded.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name is not a crate name and file stem.
    #[error(
        "plugin name {0:?} must start with a lowercase letter and hold only a-z, 0-9, - and _"
    )]
    Name(String),
    /// The directory already holds files.
    #[error("{0} already exists and is not empty")]
    NotEmpty(PathBuf),
    /// No SDK was given and the source tree pgmorph was built from has none.
    #[error("the {lang} SDK is not at {path}: pass --sdk-path (the SDK folder of a pgmorph checkout: {folder}){git}")]
    NoSdk {
        /// The language.
        lang: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The SDK's folder in a checkout.
        folder: &'static str,
        /// A hint at `--sdk-git` for Rust.
        git: &'static str,
    },
    /// `--sdk-git` with another language than Rust.
    #[error("--sdk-git is only for --lang rust; Python and JavaScript plugins build with a local SDK (--sdk-path)")]
    GitNotRust,
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Writes the plugin's files; returns their paths.
pub fn scaffold(new: &NewPlugin) -> Result<Vec<PathBuf>, NewError> {
    check_name(&new.name)?;
    if new.sdk_git.is_some() && new.lang != Lang::Rust {
        return Err(NewError::GitNotRust);
    }
    let nonempty = std::fs::read_dir(&new.dir).is_ok_and(|mut d| d.next().is_some());
    if nonempty {
        return Err(NewError::NotEmpty(new.dir.clone()));
    }
    let sdk = sdk_location(new)?;
    let values = Values::new(&new.name, &sdk);
    let mut written = Vec::new();
    for t in templates::templates(new.lang) {
        let path = new.dir.join(t.path);
        write(
            &path,
            &templates::render(t.text, &values.pairs()),
            t.executable,
        )
        .map_err(|source| NewError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

fn check_name(name: &str) -> Result<(), NewError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NewError::Name(name.to_string()))
    }
}

/// Where the plugin finds its SDK.
enum Sdk {
    /// A local folder (absolute).
    Path(PathBuf),
    /// A git repository holding the Rust SDK.
    Git(String),
}

/// The SDK folder of each language in a pgmorph checkout.
fn sdk_folder(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "plugin-sdk",
        Lang::Python => "sdk-python",
        Lang::Js => "sdk-js",
    }
}

fn sdk_location(new: &NewPlugin) -> Result<Sdk, NewError> {
    if let Some(url) = &new.sdk_git {
        return Ok(Sdk::Git(url.clone()));
    }
    let folder = sdk_folder(new.lang);
    let path = match &new.sdk_path {
        Some(p) => p.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(folder),
    };
    let marker = match new.lang {
        Lang::Rust => "Cargo.toml",
        Lang::Python | Lang::Js => "build.sh",
    };
    match std::fs::canonicalize(&path) {
        Ok(abs) if abs.join(marker).is_file() => Ok(Sdk::Path(abs)),
        _ => Err(NewError::NoSdk {
            lang: match new.lang {
                Lang::Rust => "Rust",
                Lang::Python => "Python",
                Lang::Js => "JavaScript",
            },
            path,
            folder,
            git: match new.lang {
                Lang::Rust => ", or --sdk-git URL",
                _ => "",
            },
        }),
    }
}

/// The values of the templates' placeholders.
struct Values {
    name: String,
    type_name: String,
    lib_name: String,
    sdk_dependency: String,
    sdk_path: String,
    sdk_readme: String,
}

impl Values {
    fn new(name: &str, sdk: &Sdk) -> Self {
        let (sdk_dependency, sdk_path, sdk_readme) = match sdk {
            Sdk::Path(p) => {
                let p = p.display().to_string();
                (
                    format!("{{ path = {} }}", toml_string(&p)),
                    p.clone(),
                    format!("{p}/README.md"),
                )
            }
            Sdk::Git(url) => (
                format!("{{ git = {} }}", toml_string(url)),
                url.clone(),
                "plugin-sdk/README.md of the pgmorph repository".to_string(),
            ),
        };
        Values {
            name: name.to_string(),
            type_name: type_name(name),
            lib_name: name.replace('-', "_"),
            sdk_dependency,
            sdk_path,
            sdk_readme,
        }
    }

    fn pairs(&self) -> [(&str, &str); 6] {
        [
            ("name", &self.name),
            ("type_name", &self.type_name),
            ("lib_name", &self.lib_name),
            ("sdk_dependency", &self.sdk_dependency),
            ("sdk_path", &self.sdk_path),
            ("sdk_readme", &self.sdk_readme),
        ]
    }
}

/// `my-plugin` -> `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn write(path: &Path, text: &str, executable: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_type_names() {
        assert_eq!(type_name("my-plugin"), "MyPlugin");
        assert_eq!(type_name("upper_case2"), "UpperCase2");
        assert_eq!(type_name("x"), "X");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "1up", "Upper", "a b", "a/b", "-a"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("up-per_2").is_ok());
    }

    #[test]
    fn a_non_empty_directory_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "x").unwrap();
        let new = NewPlugin {
            name: "p".into(),
            lang: Lang::Rust,
            dir: dir.path().to_path_buf(),
            sdk_path: None,
            sdk_git: None,
        };
        assert!(matches!(scaffold(&new), Err(NewError::NotEmpty(_))));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_git_sdk_is_a_git_dependency() {
        let dir = tempfile::tempdir().unwrap();
        let new = NewPlugin {
            name: "p".into(),
            lang: Lang::Rust,
            dir: dir.path().join("p"),
            sdk_path: None,
            sdk_git: Some("https://example.com/pgmorph.git".into()),
        };
        scaffold(&new).unwrap();
        let manifest = std::fs::read_to_string(dir.path().join("p/Cargo.toml")).unwrap();
        assert!(
            manifest
                .contains(r#"pgmorph-plugin-sdk = { git = "https://example.com/pgmorph.git" }"#),
            "{manifest}"
        );
    }

    #[test]
    fn a_missing_sdk_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let new = NewPlugin {
            name: "p".into(),
            lang: Lang::Python,
            dir: dir.path().join("p"),
            sdk_path: Some(dir.path().join("nowhere")),
            sdk_git: None,
        };
        let err = scaffold(&new).unwrap_err().to_string();
        assert!(
            err.contains("--sdk-path") && err.contains("sdk-python"),
            "{err}"
        );
    }
}
