//! A headless login driver: what a developer does in a browser after `/login`. A reqwest client
//! with a cookie store opens `verification_uri_complete`, confirms the code by posting the
//! gateway's (CSRF-protected) form as it was served, follows redirects to the IdP, signs in on
//! its login form, accepts its consent form, and lands back on the gateway's callback.
//!
//! Forms are read from the HTML as a browser would: the first `method="post"` form, its inputs
//! with their served values (hidden CSRF fields included), and, when it has several named
//! submit buttons, the one that approves (or denies).

use std::time::Duration;

use reqwest::Url;
use reqwest::redirect::Policy;

/// What the user clicks on the gateway's confirmation page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Approve,
    Deny,
}

/// The last page of a login: the gateway's callback (or wherever the journey stopped).
#[derive(Debug)]
pub struct Landing {
    pub url: Url,
    pub status: u16,
    pub body: String,
    /// Every URL visited, in order (for failure messages).
    pub trail: Vec<String>,
}

/// A browser with its own cookie jar.
pub struct Browser {
    http: reqwest::Client,
}

const MAX_STEPS: usize = 25;

impl Browser {
    pub fn new() -> anyhow::Result<Browser> {
        Ok(Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .timeout(Duration::from_secs(15))
                .build()?,
        })
    }

    /// Opens `start` (a `verification_uri_complete`), confirms or denies the code, and signs in
    /// at the IdP as `login` when asked. Returns the page the journey ended on: the first
    /// non-redirect response whose path is `/oauth/callback`, or any page with no form to go on.
    pub async fn device_login(
        &self,
        start: &str,
        login: &str,
        choice: Choice,
    ) -> anyhow::Result<Landing> {
        self.journey(start, login, choice, |_| false).await
    }

    /// Like [`Browser::device_login`], but stops before following a redirect to a URL for which
    /// `stop_before` is true; that URL is then the landing's `url` (with status 0).
    pub async fn journey(
        &self,
        start: &str,
        login: &str,
        choice: Choice,
        stop_before: impl Fn(&Url) -> bool,
    ) -> anyhow::Result<Landing> {
        let mut trail = Vec::new();
        let mut url = Url::parse(start)?;
        let mut resp = self.http.get(url.clone()).send().await?;
        for _ in 0..MAX_STEPS {
            trail.push(format!("{} {}", resp.status().as_u16(), url));
            if resp.status().is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| anyhow::anyhow!("redirect without Location at {url}"))?;
                url = url.join(location)?;
                if stop_before(&url) {
                    return Ok(Landing {
                        url,
                        status: 0,
                        body: String::new(),
                        trail,
                    });
                }
                resp = self.http.get(url.clone()).send().await?;
                continue;
            }
            let status = resp.status().as_u16();
            let body = resp.text().await?;
            let form = if url.path().ends_with("/oauth/callback") {
                None
            } else {
                Form::first_post(&body)
            };
            let Some(form) = form else {
                return Ok(Landing {
                    url,
                    status,
                    body,
                    trail,
                });
            };
            let fields = form.fill(login, choice);
            let action = url.join(&form.action)?;
            resp = self.http.post(action.clone()).form(&fields).send().await?;
            url = action;
        }
        anyhow::bail!("login did not finish within {MAX_STEPS} steps: {trail:#?}")
    }
}

/// One HTML form, read loosely (the pages under test are simple and machine-made).
#[derive(Debug, Default)]
pub struct Form {
    pub action: String,
    /// `(name, value, type)` of every `<input>`.
    pub inputs: Vec<(String, String, String)>,
    /// `(name, value)` of every named submit `<button>`.
    pub buttons: Vec<(String, String)>,
}

impl Form {
    /// The first form with `method="post"` in `html`.
    pub fn first_post(html: &str) -> Option<Form> {
        let lower = html.to_ascii_lowercase();
        let mut from = 0;
        while let Some(start) = lower[from..].find("<form").map(|i| i + from) {
            let end = lower[start..]
                .find("</form>")
                .map_or(html.len(), |i| i + start);
            let tag_end = lower[start..].find('>').map_or(end, |i| i + start);
            let attrs = attributes(&html[start + 5..tag_end]);
            let method = attr(&attrs, "method").unwrap_or_default();
            if method.eq_ignore_ascii_case("post") {
                let inner = &html[tag_end..end];
                return Some(Form {
                    action: attr(&attrs, "action").unwrap_or_default(),
                    inputs: tags(inner, "<input")
                        .into_iter()
                        .filter_map(|a| {
                            Some((
                                attr(&a, "name")?,
                                attr(&a, "value").unwrap_or_default(),
                                attr(&a, "type").unwrap_or_else(|| "text".into()),
                            ))
                        })
                        .collect(),
                    buttons: tags(inner, "<button")
                        .into_iter()
                        .filter_map(|a| {
                            Some((attr(&a, "name")?, attr(&a, "value").unwrap_or_default()))
                        })
                        .collect(),
                });
            }
            from = end;
        }
        None
    }

    /// The fields a user would submit: served values, the login in `login`/`username`/`email`
    /// text fields, a password, and the approving (or denying) button.
    pub fn fill(&self, login: &str, choice: Choice) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value, kind) in &self.inputs {
            let v = match (kind.to_ascii_lowercase().as_str(), name.as_str()) {
                ("password", _) => "any-password".to_owned(),
                ("text" | "email", "login" | "username" | "email") if value.is_empty() => {
                    login.to_owned()
                }
                ("submit", _) => continue,
                _ => value.clone(),
            };
            out.push((name.clone(), v));
        }
        let submits: Vec<(String, String)> = self
            .buttons
            .iter()
            .cloned()
            .chain(
                self.inputs
                    .iter()
                    .filter(|(_, _, k)| k.eq_ignore_ascii_case("submit"))
                    .map(|(n, v, _)| (n.clone(), v.clone())),
            )
            .collect();
        let wanted: &[&str] = match choice {
            Choice::Approve => &["approve", "allow", "confirm", "accept", "yes"],
            Choice::Deny => &["deny", "reject", "cancel", "no"],
        };
        let pick = submits
            .iter()
            .find(|(n, v)| {
                let both = format!("{n} {v}").to_ascii_lowercase();
                wanted.iter().any(|w| both.contains(w))
            })
            .or(submits.first());
        if let Some((n, v)) = pick {
            out.push((n.clone(), v.clone()));
        }
        out
    }
}

fn tags(html: &str, open: &str) -> Vec<Vec<(String, String)>> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = lower[from..].find(open).map(|i| i + from) {
        let end = lower[start..].find('>').map_or(html.len(), |i| i + start);
        out.push(attributes(&html[start + open.len()..end]));
        from = end;
    }
    out
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Parses `a="x" b='y' c=z d` into pairs, unescaping the common HTML entities.
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start_matches('/').trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace() || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_owned();
        rest = rest[name_end..].trim_start();
        let mut value = String::new();
        if let Some(r) = rest.strip_prefix('=') {
            let r = r.trim_start();
            let (v, after) = match r.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let close = r[1..].find(q).map_or(r.len(), |i| i + 1);
                    (&r[1..close], r.get(close + 1..).unwrap_or(""))
                }
                _ => {
                    let e = r.find(char::is_whitespace).unwrap_or(r.len());
                    (&r[..e], &r[e..])
                }
            };
            value = unescape(v);
            rest = after;
        }
        if !name.is_empty() {
            out.push((name, value));
        }
        rest = rest.trim_start().trim_start_matches('/').trim_start();
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_post_form_with_hidden_csrf_field_and_picks_the_approving_button() {
        let html = r#"<html><form method="get" action="/x"></form>
            <FORM action="/device" method=POST>
              <input type="hidden" name="csrf" value="a&amp;b">
              <input type="hidden" name="user_code" value='WDJB-MJHT'/>
              <button type="submit" name="action" value="deny">Deny</button>
              <button type="submit" name="action" value="approve">Approve</button>
            </form>"#;
        let form = Form::first_post(html).unwrap();
        assert_eq!(form.action, "/device");
        let fields = form.fill("alice", Choice::Approve);
        assert_eq!(
            fields,
            vec![
                ("csrf".into(), "a&b".into()),
                ("user_code".into(), "WDJB-MJHT".into()),
                ("action".into(), "approve".into()),
            ]
        );
        let denied = form.fill("alice", Choice::Deny);
        assert_eq!(denied.last().unwrap().1, "deny");
    }

    #[test]
    fn fills_login_and_password_fields() {
        let html = r#"<form autocomplete="off" action="/interaction/abc" method="post">
          <input type="hidden" name="prompt" value="login"/>
          <input required type="text" name="login" placeholder="Enter any login" autofocus="on">
          <input required type="password" name="password" placeholder="and password" >
          <button type="submit" class="login login-submit">Sign-in</button></form>"#;
        let form = Form::first_post(html).unwrap();
        assert_eq!(
            form.fill("alice", Choice::Approve),
            vec![
                ("prompt".into(), "login".into()),
                ("login".into(), "alice".into()),
                ("password".into(), "any-password".into()),
            ]
        );
    }
}
