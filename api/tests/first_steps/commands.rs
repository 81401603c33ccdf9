//! The shell commands the documentation gives, taken from the files themselves: the `sh` blocks
//! of a README section, and the "Try:" list `run-local.sh` prints.

/// The `sh` code blocks of the README section whose heading is `heading` (up to the next `## `
/// heading), each as its list of commands.
pub fn readme_blocks(readme: &str, heading: &str) -> Vec<Vec<String>> {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has no `{heading}` section"));
    let section = &readme[start + heading.len() + 2..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("\n```").expect("a closed code block");
        blocks.push(split_commands(&body[..close]));
        rest = &body[close + 4..];
    }
    assert!(!blocks.is_empty(), "`{heading}` has no sh block");
    blocks
}

/// The commands after the `Try:` line of the runner's output (indented lines, `\` continued).
pub fn try_list(output: &str) -> Vec<String> {
    let after = output
        .split_once("\nTry:\n")
        .unwrap_or_else(|| panic!("run-local.sh printed no `Try:` list:\n{output}"))
        .1;
    let lines: Vec<&str> = after
        .lines()
        .take_while(|line| line.starts_with("  "))
        .map(str::trim)
        .collect();
    let commands = split_commands(&lines.join("\n"));
    assert!(!commands.is_empty(), "an empty `Try:` list:\n{output}");
    commands
}

/// Shell text split into its commands: a newline ends a command unless it is escaped by `\` or
/// inside quotes (a JSON body may span lines). `#` comments and blank lines are dropped.
pub fn split_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '\n' if !single && !double => {
                push(&mut commands, &current);
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    assert!(!single && !double, "unbalanced quotes in:\n{text}");
    push(&mut commands, &current);
    commands
}

fn push(commands: &mut Vec<String>, command: &str) {
    // A `\`-newline continuation is one space to the shell.
    let command = command.replace("\\\n", " ");
    let command = command.trim();
    if !command.is_empty() && !command.starts_with('#') {
        commands.push(command.to_owned());
    }
}

/// The JSON body a command sends with `-d '…'`, if any.
pub fn body_sent(command: &str) -> Option<serde_json::Value> {
    let start = command.find("-d '")? + 4;
    let end = command[start..].find('\'')? + start;
    Some(serde_json::from_str(&command[start..end]).expect("a JSON body"))
}

/// The HTTP method (`-X`) of a curl command; `GET` without one.
pub fn method(command: &str) -> &str {
    command
        .split_whitespace()
        .skip_while(|word| *word != "-X")
        .nth(1)
        .unwrap_or("GET")
}

/// The path (and query) of the URL of a curl command, quotes removed: `/v1/places/p1`.
pub fn path(command: &str, addr: &str) -> String {
    let start = command
        .find(addr)
        .unwrap_or_else(|| panic!("`{command}` does not go to {addr}"))
        + addr.len();
    command[start..]
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn commands_are_split_as_the_shell_does() {
    let text = "# a comment\ncurl -s a \\\n  -H 'x: y'\ncurl -d '{\n  \"a\": 1 }'\n\ncurl \"b\"";
    assert_eq!(
        split_commands(text),
        vec![
            "curl -s a    -H 'x: y'",
            "curl -d '{\n  \"a\": 1 }'",
            "curl \"b\""
        ]
    );
    assert_eq!(method("curl -s -X PUT h/v1/p"), "PUT");
    assert_eq!(method("curl -s h/v1/p"), "GET");
    assert_eq!(
        path("curl -s 'h:1/v1/p?a=1&b=2' -i", "h:1"),
        "/v1/p?a=1&b=2"
    );
    assert_eq!(
        body_sent("curl -d '{ \"rating\": 4.8 }'"),
        Some(serde_json::json!({ "rating": 4.8 }))
    );
}
