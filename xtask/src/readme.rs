//! The README's shell blocks name only things that exist: every repository
//! path they mention (a sample, an overlay, a Dockerfile), every `cargo
//! xtask` subcommand and flag (checked against xtask's own clap definition),
//! and every `keeper-agent` and `keeper-operator` subcommand and flag
//! (checked against those binaries' clap definitions). A renamed file or flag
//! fails this test instead of a newcomer's first hour.

use std::path::Path;

use clap::CommandFactory;

/// The commands of every ```sh block: continuation lines joined, comments
/// dropped, split at `|`, `&&`, `||` and `;`.
fn shell_commands(markdown: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut block: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match &mut block {
            None if fence.starts_with("```sh") || fence.starts_with("```bash") => {
                block = Some(String::new())
            }
            None => {}
            Some(text) if fence.starts_with("```") => {
                let joined = text.replace("\\\n", " ");
                for command_line in joined.lines() {
                    commands.extend(split_command_line(command_line));
                }
                block = None;
            }
            Some(text) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    commands
}

fn split_command_line(line: &str) -> Vec<Vec<String>> {
    let words = shlex::split(line).unwrap_or_else(|| panic!("unbalanced quotes in README: {line}"));
    let mut commands = vec![Vec::new()];
    for word in words {
        let (word, ends) = match word.strip_suffix(';') {
            Some(w) => (w.to_owned(), true),
            None => (word, false),
        };
        if matches!(word.as_str(), "|" | "&&" | "||" | ";") {
            commands.push(Vec::new());
            continue;
        }
        if let Some(current) = commands.last_mut()
            && !word.is_empty()
        {
            current.push(word);
        }
        if ends {
            commands.push(Vec::new());
        }
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// What is wrong with one command, if anything.
fn check_command(root: &Path, words: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    // A word whose first component is a top-level entry of the repository
    // (`deploy/samples/x.yaml`, `Dockerfile.agent`) names a file of it. Not
    // for kubectl's resource names (`rollout status deploy/keeper-operator`):
    // there only the arguments of its file options are paths.
    let kubectl = words.first().is_some_and(|w| w == "kubectl");
    let file_options = ["-f", "-k", "--filename", "--kustomize", "--from-file"];
    for (i, word) in words.iter().enumerate() {
        // `--flag=value` and `key=value` name a path in their value.
        let value = word.rsplit_once('=').map_or(word.as_str(), |(_, v)| v);
        let first = value.split('/').next().unwrap_or("");
        let file_argument = i > 0 && file_options.contains(&words[i - 1].as_str())
            || file_options
                .iter()
                .any(|o| word.starts_with(&format!("{o}=")));
        let in_repository = !matches!(first, "" | "." | ".." | "target")
            && !value.contains("://")
            && root.join(first).exists()
            && (value.contains('/') || first.starts_with("Dockerfile"));
        if in_repository && (!kubectl || file_argument) && !root.join(value).exists() {
            problems.push(format!("`{value}` does not exist in the repository"));
        }
        if first.starts_with("Dockerfile") && !root.join(first).exists() {
            problems.push(format!("`{value}` does not exist in the repository"));
        }
    }
    match words {
        [cargo, xtask, rest @ ..] if cargo == "cargo" && xtask == "xtask" => {
            problems.extend(check_clap(crate::Cli::command(), rest));
        }
        [agent, rest @ ..] if agent == "keeper-agent" => {
            problems.extend(check_clap(keeper_agent::Cli::command(), rest));
        }
        [operator, rest @ ..] if operator == "keeper-operator" => {
            problems.extend(check_clap(keeper_operator::cli::Cli::command(), rest));
        }
        _ => {}
    }
    problems
}

/// The subcommands named must exist, and every long flag must be one of the
/// innermost subcommand's (or a global one).
fn check_clap(mut command: clap::Command, words: &[String]) -> Vec<String> {
    let name = command.get_name().to_owned();
    let mut path = vec![name];
    let mut globals: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut words = words.iter().peekable();
    while command.has_subcommands() {
        let Some(next) = words.peek() else { break };
        if next.starts_with('-') {
            break;
        }
        globals.extend(
            command
                .get_arguments()
                .filter(|a| a.is_global_set())
                .filter_map(|a| a.get_long().map(str::to_owned)),
        );
        match command.find_subcommand(next.as_str()) {
            Some(sub) => {
                path.push((*next).clone());
                command = sub.clone();
                words.next();
            }
            None => {
                problems.push(format!("`{} {next}`: no such subcommand", path.join(" ")));
                return problems;
            }
        }
    }
    let longs: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .chain(globals)
        .chain(["help".to_owned(), "version".to_owned()])
        .collect();
    for word in words {
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap_or(flag);
            if !longs.iter().any(|l| l == flag) {
                problems.push(format!("`{} --{flag}`: no such flag", path.join(" ")));
            }
        }
    }
    problems
}

fn problems_in(root: &Path, markdown: &str) -> Vec<String> {
    shell_commands(markdown)
        .iter()
        .flat_map(|words| {
            check_command(root, words)
                .into_iter()
                .map(move |p| format!("{p} (in `{}`)", words.join(" ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sh::workspace_root;

    #[test]
    fn every_file_command_and_flag_in_the_readme_exists() {
        let root = workspace_root();
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        let commands = shell_commands(&readme);
        assert!(
            commands.len() >= 10,
            "the README's ```sh blocks were not found: {commands:?}"
        );
        for needed in [["cargo", "xtask", "demo"], ["cargo", "xtask", "ci"]] {
            assert!(
                commands
                    .iter()
                    .any(|c| c.starts_with(&needed.map(String::from))),
                "the README shows `{}`",
                needed.join(" ")
            );
        }
        let problems = problems_in(root, &readme);
        assert!(problems.is_empty(), "README.md:\n{}", problems.join("\n"));
    }

    #[test]
    fn a_missing_file_subcommand_or_flag_is_reported() {
        let root = workspace_root();
        let readme = "text\n```sh\n\
            kubectl apply -f deploy/samples/no-such-sample.yaml   # a comment\n\
            cargo xtask deploy\n\
            cargo xtask bench --no-such-flag && cargo xtask bench --rows 10\n\
            kubectl create secret generic x \\\n  --from-file=ca.crt=deploy/samples/gone.pem\n\
            keeper-agent backup --host h --user u --to s3://b --encrypt-with k\n\
            keeper-operator run --agent-image x --no-such-operator-flag\n\
            docker build -f Dockerfile.nothing .\n\
            ```\n";
        let problems = problems_in(root, readme);
        let expected = [
            "deploy/samples/no-such-sample.yaml",
            "`cargo xtask deploy`: no such subcommand",
            "`cargo xtask bench --no-such-flag`",
            "deploy/samples/gone.pem",
            "`keeper-agent backup --encrypt-with`",
            "`keeper-operator run --no-such-operator-flag`",
            "Dockerfile.nothing",
        ];
        for want in expected {
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want} not reported in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    }

    #[test]
    fn what_exists_passes() {
        let root = workspace_root();
        let readme = "```sh\n\
            kubectl apply -k deploy/default && kubectl get myi -w\n\
            kubectl -n keeper-system rollout status deploy/keeper-operator\n\
            kubectl create secret generic ca --from-file=ca.crt=./my-ca.pem\n\
            cargo xtask bench --rows 10 --skip-s3\n\
            keeper-agent list --from s3://bucket/prefix --s3-force-path-style\n\
            keeper-operator run --agent-image keeper-agent:dev\n\
            docker build -f Dockerfile.agent -t keeper-agent:dev .\n\
            ```\n";
        assert_eq!(problems_in(root, readme), Vec::<String>::new());
    }
}
