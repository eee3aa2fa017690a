//! The files of a new plugin per language, as templates compiled into the binary, and their
//! rendering (`{{name}}`-style placeholders).

use super::Lang;

/// One file of a new plugin.
pub(super) struct Template {
    /// Its path inside the plugin's directory.
    pub path: &'static str,
    /// Its text, with placeholders.
    pub text: &'static str,
    /// Whether it is a script (mode 0755).
    pub executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> Template {
    Template {
        path,
        text,
        executable: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> Template {
    Template {
        path,
        text,
        executable: true,
    }
}

const ROWS: &str = include_str!("templates/rows.jsonl");

const RUST: &[Template] = &[
    file("Cargo.toml", include_str!("templates/rust/Cargo.toml.tmpl")),
    file("src/lib.rs", include_str!("templates/rust/lib.rs")),
    file("README.md", include_str!("templates/rust/README.md")),
    file(".gitignore", include_str!("templates/rust/gitignore")),
    file("rows.jsonl", ROWS),
];

const PYTHON: &[Template] = &[
    file("plugin.py", include_str!("templates/python/plugin.py")),
    file(
        "test_plugin.py",
        include_str!("templates/python/test_plugin.py"),
    ),
    script("build.sh", include_str!("templates/python/build.sh")),
    script("test.sh", include_str!("templates/python/test.sh")),
    file("README.md", include_str!("templates/python/README.md")),
    file(".gitignore", include_str!("templates/python/gitignore")),
    file("rows.jsonl", ROWS),
];

const JS: &[Template] = &[
    file("plugin.js", include_str!("templates/js/plugin.js")),
    file(
        "plugin.test.js",
        include_str!("templates/js/plugin.test.js"),
    ),
    file("package.json", include_str!("templates/js/package.json")),
    script("build.sh", include_str!("templates/js/build.sh")),
    script("test.sh", include_str!("templates/js/test.sh")),
    file("README.md", include_str!("templates/js/README.md")),
    file(".gitignore", include_str!("templates/js/gitignore")),
    file("rows.jsonl", ROWS),
];

/// The files of a plugin in `lang`.
pub(super) fn templates(lang: Lang) -> &'static [Template] {
    match lang {
        Lang::Rust => RUST,
        Lang::Python => PYTHON,
        Lang::Js => JS,
    }
}

/// Replaces each `{{key}}` of `text` by its value.
pub(super) fn render(text: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(text.to_string(), |out, (key, value)| {
        out.replace(&format!("{{{{{key}}}}}"), value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_every_template_is_known() {
        let known = [
            "name",
            "type_name",
            "lib_name",
            "sdk_dependency",
            "sdk_path",
            "sdk_readme",
        ];
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for t in templates(lang) {
                let values: Vec<(&str, &str)> = known.iter().map(|k| (*k, "x")).collect();
                let out = render(t.text, &values);
                assert!(!out.contains("{{"), "{}: {out}", t.path);
            }
        }
    }

    #[test]
    fn render_replaces_every_occurrence() {
        let out = render("{{a}}-{{b}}-{{a}}", &[("a", "1"), ("b", "2")]);
        assert_eq!(out, "1-2-1");
    }
}
