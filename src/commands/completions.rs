//! `nsfw completions SHELL`: clap_complete's script for the commands a user sees (the hidden
//! `sandbox` left out), with what a static script cannot know added per shell: `nsfw exec
//! <TAB>` offers the namespaces of /run/netns (as bash-completion's `ip netns exec` does), and a
//! command's FILE completes file names from the first character.

use clap::Command;

use crate::output;

use super::{Fail, OK};

/// The command line without its hidden commands (and the help command lists none of them).
fn visible() -> Command {
    let full = crate::cli::command();
    let mut cmd = Command::new("nsfw")
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"));
    for a in full
        .get_arguments()
        .filter(|a| a.get_id() != "help" && a.get_id() != "version")
    {
        cmd = cmd.arg(a.clone());
    }
    for s in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(s.clone());
    }
    cmd
}

/// Bash: clap's function becomes `_nsfw_clap`; `_nsfw` completes namespaces after `exec`,
/// commands after the namespace, and files (and directories) where a command takes FILE,
/// leaving options (a word starting with `-`) and option values to clap's.
const BASH_WRAPPER: &str = r#"
_nsfw() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" i at=0 cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -*) ;;
            *) cmd="${COMP_WORDS[i]}"; at=$i; break ;;
        esac
    done
    case "$cmd" in
        exec)
            local n=0 j
            for ((j = at + 1; j < COMP_CWORD; j++)); do
                [[ ${COMP_WORDS[j]} == -* ]] || n=$((n + 1))
            done
            if [[ $n -eq 0 && $cur != -* ]]; then
                local names
                names=$(command ls -1 /run/netns 2>/dev/null)
                COMPREPLY=( $(compgen -W "$names" -- "$cur") )
                return 0
            fi
            if [[ $n -ge 1 ]]; then
                if [[ $n -eq 1 ]]; then
                    COMPREPLY=( $(compgen -c -- "$cur") )
                else
                    compopt -o filenames 2>/dev/null
                    COMPREPLY=( $(compgen -f -- "$cur") )
                fi
                return 0
            fi
            ;;
        apply|diff|flush|show|try|verify|status|doctor|watch|systemd)
            case "$prev" in
                --name|--bin|--max-repairs|--pause) ;;
                --dir)
                    compopt -o filenames 2>/dev/null
                    COMPREPLY=( $(compgen -d -- "$cur") )
                    return 0
                    ;;
                *)
                    if [[ $cur != -* ]]; then
                        compopt -o filenames 2>/dev/null
                        COMPREPLY=( $(compgen -f -- "$cur") )
                        return 0
                    fi
                    ;;
            esac
            ;;
    esac
    _nsfw_clap "$@"
}
"#;

/// Fish: namespaces for `nsfw exec`.
const FISH_EXTRA: &str = "complete -c nsfw -n \"__fish_nsfw_using_subcommand exec\" -f -a \"(command ls /run/netns 2>/dev/null)\" -d 'namespace'\n";

/// `nsfw completions SHELL`.
pub fn completions(shell: crate::cli::Shell) -> Result<u8, Fail> {
    use clap_complete::Shell as S;
    let sh = match shell {
        crate::cli::Shell::Bash => S::Bash,
        crate::cli::Shell::Zsh => S::Zsh,
        crate::cli::Shell::Fish => S::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(sh, &mut visible(), "nsfw", &mut buf);
    let mut script = String::from_utf8_lossy(&buf).into_owned();
    match shell {
        crate::cli::Shell::Bash => {
            script = script.replacen("_nsfw() {", "_nsfw_clap() {", 1);
            script.push_str(BASH_WRAPPER);
        }
        crate::cli::Shell::Zsh => {
            // The namespace argument completes names in /run/netns.
            script = script.replace(
                "(a name in /run/netns):_default'",
                "(a name in /run/netns):_files -W /run/netns'",
            );
        }
        crate::cli::Shell::Fish => script.push_str(FISH_EXTRA),
    }
    output::data(format_args!("{script}"));
    Ok(OK)
}
