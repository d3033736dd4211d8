//! The docs pages: the Markdown files of the repository's `docs/` folder, compiled into
//! the binary, with `{{base_url}}` replaced by the server's public URL. Each page is served
//! as Markdown as it is, and as HTML rendered here (pulldown-cmark) inside the portal's
//! stylesheet and top bar; links to `other.md` become links to the HTML page.

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd, html};

/// One docs page.
pub struct Page {
    /// The URL name: `/docs/<slug>` and `/docs/<slug>.md`.
    pub slug: &'static str,
    /// One sentence for the index and `/llms.txt`.
    pub summary: &'static str,
    /// The Markdown source; its first line is `# Title`.
    pub source: &'static str,
}

/// Every page, in reading order. A test checks that each file of `docs/` is listed.
pub const PAGES: &[Page] = &[
    Page {
        slug: "quickstart",
        summary: "Create an API key, put it and the base URL in your environment, make the first call.",
        source: include_str!("../../../docs/quickstart.md"),
    },
    Page {
        slug: "keys",
        summary: "API keys and access tokens: creating, limiting, rotating and revoking them, and keeping them safe.",
        source: include_str!("../../../docs/keys.md"),
    },
    Page {
        slug: "sdks",
        summary: "OpenAI and Anthropic SDKs (Python, JavaScript) and curl against tokengate, and how requests are translated between the formats.",
        source: include_str!("../../../docs/sdks.md"),
    },
    Page {
        slug: "responses",
        summary: "OpenAI Responses API (/v1/responses) for the OpenAI SDK, Codex CLI and the Agents SDK: translation, previous_response_id, what is stored and for how long.",
        source: include_str!("../../../docs/responses.md"),
    },
    Page {
        slug: "streaming",
        summary: "Server-sent events in OpenAI and Anthropic formats, usage in streams, and what happens when a stream is cut off.",
        source: include_str!("../../../docs/streaming.md"),
    },
    Page {
        slug: "routing",
        summary: "Models, aliases, fallback between providers, circuit breakers and key policies.",
        source: include_str!("../../../docs/routing.md"),
    },
    Page {
        slug: "errors",
        summary: "Every error status of /v1 and /api/v1, its body, and what to do about it.",
        source: include_str!("../../../docs/errors.md"),
    },
    Page {
        slug: "billing",
        summary: "How requests are priced, held and charged; top-ups; statements and exports.",
        source: include_str!("../../../docs/billing.md"),
    },
    Page {
        slug: "cli",
        summary: "The tokengate command-line client: login, keys, env, test, topup, usage, models, --json and exit codes.",
        source: include_str!("../../../docs/cli.md"),
    },
    Page {
        slug: "agents",
        summary: "For AI agents: the whole sequence to wire tokengate into a project, and the rule that agents never pay.",
        source: include_str!("../../../docs/agents.md"),
    },
    Page {
        slug: "migration",
        summary: "Moving from LiteLLM, OpenRouter or one-api: base URL, key and model-name changes, checklist.",
        source: include_str!("../../../docs/migration.md"),
    },
    Page {
        slug: "self-hosting",
        summary: "Running tokengate: configuration, PostgreSQL, reverse proxy, backups and scaling out.",
        source: include_str!("../../../docs/self-hosting.md"),
    },
    Page {
        slug: "deploy",
        summary: "Cluster mode: N instances behind a load balancer on PostgreSQL + Redis, what is shared where, the start guard, change propagation and failure modes.",
        source: include_str!("../../../docs/deploy.md"),
    },
];

/// A page ready to serve.
pub struct Rendered {
    pub slug: &'static str,
    pub title: String,
    pub summary: &'static str,
    /// The Markdown with the base URL filled in.
    pub markdown: String,
    /// The whole HTML document.
    pub html: String,
}

impl Page {
    /// The page's title: its first `# ` heading.
    pub fn title(&self) -> &str {
        self.source
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or(self.slug)
            .trim()
    }

    /// Fills in the base URL and renders the HTML document.
    pub fn render(&self, base_url: &str) -> Rendered {
        let markdown = self.source.replace("{{base_url}}", base_url);
        let (body, toc) = markdown_to_html(&markdown);
        let title = self.title().to_string();
        let html = layout(&title, self.slug, &body, &toc);
        Rendered {
            slug: self.slug,
            title,
            summary: self.summary,
            markdown,
            html,
        }
    }
}

/// A heading's anchor: lower-case words joined by `-`.
pub fn anchor(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if (c == ' ' || c == '-' || c == '_') && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A link to another page's Markdown (`keys.md`, `keys.md#x`) as a link to its HTML page.
fn html_link(dest: &str) -> Option<String> {
    if dest.contains("://") || dest.starts_with('/') {
        return None;
    }
    let (file, fragment) = match dest.split_once('#') {
        Some((f, frag)) => (f, Some(frag)),
        None => (dest, None),
    };
    let slug = file.strip_suffix(".md")?;
    Some(match fragment {
        Some(f) => format!("/docs/{slug}#{f}"),
        None => format!("/docs/{slug}"),
    })
}

/// Renders Markdown (tables, strikethrough) with anchors on headings; also returns the
/// level-2 headings as (anchor, text) for the page's contents.
pub fn markdown_to_html(markdown: &str) -> (String, Vec<(String, String)>) {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let mut events: Vec<Event> = Vec::new();
    let mut toc = Vec::new();
    let mut heading: Option<(HeadingLevel, Vec<Event>)> = None;
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, Vec::new())),
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, inner)) = heading.take() else {
                    continue;
                };
                let text: String = inner
                    .iter()
                    .filter_map(|e| match e {
                        Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                        _ => None,
                    })
                    .collect();
                let id = anchor(&text);
                if level == HeadingLevel::H2 {
                    toc.push((id.clone(), text));
                }
                events.push(Event::Start(Tag::Heading {
                    level,
                    id: Some(CowStr::from(id)),
                    classes: Vec::new(),
                    attrs: Vec::new(),
                }));
                events.extend(inner);
                events.push(Event::End(TagEnd::Heading(level)));
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest_url = html_link(&dest_url).map_or(dest_url, CowStr::from);
                let e = Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                });
                match &mut heading {
                    Some((_, inner)) => inner.push(e),
                    None => events.push(e),
                }
            }
            other => match &mut heading {
                Some((_, inner)) => inner.push(other),
                None => events.push(other),
            },
        }
    }
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events.into_iter());
    (out, toc)
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Layout of the docs pages on top of the portal's stylesheet (its colour variables, with
/// fallbacks, so the pages still read well if the portal's styles change).
const STYLE: &str = "
.docs-layout{display:grid;grid-template-columns:15rem minmax(0,1fr);gap:2rem;max-width:76rem;margin:0 auto;padding:1.5rem}
.docs-nav ul{list-style:none;margin:0;padding:0}
.docs-nav li{margin:0.15rem 0}
.docs-nav a{display:block;padding:0.3rem 0.6rem;border-radius:6px;text-decoration:none;color:var(--text,#e6edf3)}
.docs-nav a[aria-current=page]{background:var(--panel,#172029);color:var(--accent,#4cc38a)}
.docs-nav h2{font-size:0.8rem;text-transform:uppercase;letter-spacing:0.06em;color:var(--muted,#9aa7b4);margin:1.2rem 0 0.4rem 0.6rem}
.docs-page{max-width:50rem;margin:0;padding:0}
.docs-page h1{margin-top:0}
.docs-page h2{margin-top:2rem;padding-top:0.5rem;border-top:1px solid var(--border,#2a3642)}
.docs-page table{border-collapse:collapse;margin:1rem 0;display:block;overflow-x:auto}
.docs-page th,.docs-page td{border:1px solid var(--border,#2a3642);padding:0.35rem 0.6rem;text-align:left;vertical-align:top}
.docs-page th{background:var(--panel,#172029)}
.docs-page blockquote{margin:1rem 0;padding:0.5rem 1rem;border-left:3px solid var(--accent,#4cc38a);background:var(--panel,#172029)}
.docs-page :not(pre)>code{background:var(--panel,#172029);padding:0.1rem 0.3rem;border-radius:4px}
.docs-page pre code{font-size:0.85rem}
.docs-toc{font-size:0.9rem;color:var(--muted,#9aa7b4)}
.docs-foot{margin-top:3rem;font-size:0.9rem;color:var(--muted,#9aa7b4)}
@media (max-width:50rem){.docs-layout{grid-template-columns:minmax(0,1fr)}.docs-nav{order:2;border-top:1px solid var(--border,#2a3642)}}
";

fn nav(current: Option<&str>) -> String {
    let mut out =
        String::from("<nav class=\"docs-nav\" aria-label=\"Docs pages\"><h2>Docs</h2><ul>");
    let overview = if current.is_none() {
        " aria-current=\"page\""
    } else {
        ""
    };
    out.push_str(&format!(
        "<li><a href=\"/docs\"{overview}>Overview</a></li>"
    ));
    for p in PAGES {
        let cur = if current == Some(p.slug) {
            " aria-current=\"page\""
        } else {
            ""
        };
        out.push_str(&format!(
            "<li><a href=\"/docs/{}\"{cur}>{}</a></li>",
            p.slug,
            esc(p.title())
        ));
    }
    out.push_str(
        "</ul><h2>Reference</h2><ul><li><a href=\"/api/docs\">API explorer</a></li>\
         <li><a href=\"/openapi.json\">openapi.json</a></li>\
         <li><a href=\"/llms.txt\">llms.txt</a></li>\
         <li><a href=\"/llms-full.txt\">llms-full.txt</a></li></ul></nav>",
    );
    out
}

fn document(title: &str, head_extra: &str, current: Option<&str>, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\
<title>{title}</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\"/>\
<link rel=\"stylesheet\" href=\"/pkg/tokengate.css\"/>{head_extra}<style>{STYLE}</style></head>\n\
<body><header class=\"topbar\"><a class=\"brand\" href=\"/\">tokengate</a><nav>\
<a href=\"/docs\" aria-current=\"page\">Docs</a><a href=\"/console\">Console</a>\
<a href=\"/api/docs\">API explorer</a></nav></header>\n\
<div class=\"docs-layout\">{nav}<main class=\"docs-page\">{main}</main></div></body></html>\n",
        title = esc(title),
        nav = nav(current),
    )
}

fn layout(title: &str, slug: &str, body: &str, toc: &[(String, String)]) -> String {
    let mut body = body.to_string();
    if toc.len() > 2 {
        let items: String = toc
            .iter()
            .map(|(id, text)| format!("<a href=\"#{id}\">{}</a>", esc(text)))
            .collect::<Vec<_>>()
            .join(" · ");
        let contents = format!("<p class=\"docs-toc\">On this page: {items}</p>");
        // Under the title.
        match body.find("</h1>") {
            Some(at) => body.insert_str(at + "</h1>".len(), &contents),
            None => body.insert_str(0, &contents),
        }
    }
    let mut main = format!("<article>{body}</article>");
    main.push_str(&format!(
        "<p class=\"docs-foot\">This page as Markdown: <a href=\"/docs/{slug}.md\">{slug}.md</a> \
         · all docs for LLMs: <a href=\"/llms-full.txt\">llms-full.txt</a></p>"
    ));
    document(
        &format!("{title} — tokengate docs"),
        &format!("<link rel=\"alternate\" type=\"text/markdown\" href=\"/docs/{slug}.md\"/>"),
        Some(slug),
        &main,
    )
}

/// `/docs`: every page with its summary.
pub fn index_html(pages: &[Rendered]) -> String {
    let mut main = String::from(
        "<h1>tokengate docs</h1><p class=\"lead\">tokengate is one OpenAI- and \
         Anthropic-compatible endpoint for every model your operator connects, with keys, \
         metering and billing to the nano-dollar. Start with the quickstart.</p><dl>",
    );
    for p in pages {
        main.push_str(&format!(
            "<dt><a href=\"/docs/{}\">{}</a></dt><dd>{}</dd>",
            p.slug,
            esc(&p.title),
            esc(p.summary)
        ));
    }
    main.push_str(
        "</dl><h2>Reference</h2><p>The <a href=\"/api/docs\">API explorer</a> lists every \
         endpoint and can call this server with your API key or access token. The same \
         description as OpenAPI 3.1: <a href=\"/openapi.json\">/openapi.json</a>. For LLMs: \
         <a href=\"/llms.txt\">/llms.txt</a> and <a href=\"/llms-full.txt\">/llms-full.txt</a>.</p>",
    );
    document("tokengate docs", "", None, &main)
}

/// The answer for an unknown page.
pub fn not_found_html(pages: &[Rendered], slug: &str) -> String {
    let mut main = format!(
        "<h1>No such page</h1><p>There is no docs page <code>{}</code>. The pages:</p><ul>",
        esc(slug)
    );
    for p in pages {
        main.push_str(&format!(
            "<li><a href=\"/docs/{}\">{}</a></li>",
            p.slug,
            esc(&p.title)
        ));
    }
    main.push_str("</ul>");
    document("Not found — tokengate docs", "", None, &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_anchors_and_md_links_point_to_pages() {
        let (html, toc) = markdown_to_html(
            "# Title\n\n## Keys and `sk-tg` secrets\n\nSee [keys](keys.md#revoking) and [x](https://e.x/a.md).\n",
        );
        assert!(
            html.contains("<h2 id=\"keys-and-sk-tg-secrets\">"),
            "{html}"
        );
        assert!(html.contains("href=\"/docs/keys#revoking\""), "{html}");
        assert!(html.contains("href=\"https://e.x/a.md\""), "{html}");
        assert_eq!(toc.len(), 1);
    }

    #[test]
    fn every_page_has_a_title_and_a_unique_slug() {
        let mut slugs: Vec<_> = PAGES.iter().map(|p| p.slug).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), PAGES.len());
        for p in PAGES {
            assert!(
                p.source.starts_with("# "),
                "{} must start with its title",
                p.slug
            );
        }
    }
}
