// stagelog help [COMMAND...] and stagelog completion bash|zsh|fish. Both read the commands and
// options from the CLI11 app itself, so a new command or option is in them without an edit here.

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "stagelog/error.hpp"

namespace stagelog::cli {

namespace {

void print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// A command's subcommands as the user sees them (no option groups, which CLI11 also keeps as
// subcommands without a name).
std::vector<CLI::App*> commands_of(CLI::App& app) {
  std::vector<CLI::App*> out;
  for (CLI::App* sub : app.get_subcommands({})) {
    if (!sub->get_name().empty()) out.push_back(sub);
  }
  return out;
}

std::string names_of(CLI::App& app) {
  std::string names;
  for (CLI::App* sub : commands_of(app)) {
    if (!names.empty()) names += ", ";
    names += sub->get_name();
  }
  return names;
}

struct OptionInfo {
  std::string name;  // "--listen", or "-q" where there is no long name.
  std::string description;
  bool takes_value = false;
};

std::vector<OptionInfo> options_of(const CLI::App& app) {
  std::vector<OptionInfo> out;
  for (const CLI::Option* opt : app.get_options({})) {
    if (opt->get_positional() && opt->get_lnames().empty() && opt->get_snames().empty()) continue;
    OptionInfo info;
    info.description = opt->get_description();
    info.takes_value = opt->get_expected_min() != 0;  // A flag expects no value.
    for (const std::string& l : opt->get_lnames())
      out.push_back({"--" + l, info.description, info.takes_value});
    for (const std::string& s : opt->get_snames())
      out.push_back({"-" + s, info.description, info.takes_value});
  }
  return out;
}

bool has_positionals(const CLI::App& app) {
  for (const CLI::Option* opt : app.get_options({})) {
    if (opt->get_positional()) return true;
  }
  return false;
}

// The first line of a description, with the characters the shells' quoting or zsh's option
// specs would take for syntax replaced.
std::string summary(std::string_view text) {
  std::string out(text.substr(0, text.find('\n')));
  for (char& c : out) {
    if (c == '\'' || c == '[' || c == ']' || c == ':' || c == '\\' || c == '"' || c == '`' ||
        c == '$') {
      c = ' ';
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// Every command path under the app: {"parse"}, {"token"}, {"token", "create"} ...
void walk(CLI::App& app, std::vector<std::string>& path,
          std::vector<std::pair<std::vector<std::string>, CLI::App*>>& out) {
  for (CLI::App* sub : commands_of(app)) {
    path.push_back(sub->get_name());
    out.emplace_back(path, sub);
    walk(*sub, path, out);
    path.pop_back();
  }
}

std::string join(const std::vector<std::string>& words, std::string_view sep) {
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) out += sep;
    out += w;
  }
  return out;
}

std::string bash_script(CLI::App& app) {
  std::vector<std::pair<std::vector<std::string>, CLI::App*>> paths;
  std::vector<std::string> path;
  walk(app, path, paths);
  auto words_of = [](CLI::App& a) {
    std::vector<std::string> words;
    for (CLI::App* sub : commands_of(a)) words.push_back(sub->get_name());
    for (const OptionInfo& o : options_of(a)) words.push_back(o.name);
    return join(words, " ");
  };
  std::string s =
      "# bash completion for stagelog (stagelog completion bash). Install:\n"
      "#   stagelog completion bash > ~/.local/share/bash-completion/completions/stagelog\n"
      "_stagelog() {\n"
      "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} path=\"\" i w\n"
      "  # The command path so far: the words that name commands, in order.\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    w=${COMP_WORDS[i]}\n"
      "    case \"$path ${w}\" in\n";
  std::string known;
  for (const auto& [p, sub] : paths) {
    known += "      \"" + (p.size() == 1 ? std::string() : join({p.begin(), p.end() - 1}, " ")) +
             " " + p.back() + "\") path=\"" + join(p, " ") + "\" ;;\n";
  }
  s += known;
  s += "    esac\n"
       "  done\n"
       "  local words=\"\" values=\"\"\n"
       "  case $path in\n";
  s += "    \"\") words=\"" + words_of(app) + "\" ;;\n";
  for (const auto& [p, sub] : paths) {
    std::vector<std::string> valued;
    for (const OptionInfo& o : options_of(*sub)) {
      if (o.takes_value) valued.push_back(o.name);
    }
    s += "    \"" + join(p, " ") + "\") words=\"" + words_of(*sub) + "\"; values=\"" +
         join(valued, " ") + "\" ;;\n";
  }
  s += "  esac\n"
       "  case $path in\n"
       "    help) words=\"" +
       names_of(app) +
       "\" ;;\n"
       "    completion) words=\"bash zsh fish\" ;;\n"
       "  esac\n"
       "  words=${words//,/}\n"
       "  # After an option that takes a value: files (most values are paths).\n"
       "  if [[ \" $values \" == *\" $prev \"* ]]; then\n"
       "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
       "  elif [[ $cur == -* || -n $words ]]; then\n"
       "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
       "    [[ ${#COMPREPLY[@]} -eq 0 && $cur != -* ]] && COMPREPLY=($(compgen -f -- \"$cur\"))\n"
       "  else\n"
       "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
       "  fi\n"
       "}\n"
       "complete -o filenames -F _stagelog stagelog\n";
  return s;
}

// zsh: one function per command path, _arguments for its options, _describe for its commands.
std::string zsh_function(const std::string& name, CLI::App& app) {
  std::string s = name + "() {\n";
  std::vector<CLI::App*> subs = commands_of(app);
  std::vector<std::string> specs;
  for (const OptionInfo& o : options_of(app)) {
    std::string spec = "'" + o.name + "[" + summary(o.description) + "]";
    if (o.takes_value) spec += ":value:_files";
    specs.push_back(spec + "'");
  }
  if (!subs.empty()) {
    s += "  local -a commands\n  commands=(\n";
    for (CLI::App* sub : subs) {
      s += "    '" + sub->get_name() + ":" + summary(sub->get_description()) + "'\n";
    }
    s += "  )\n";
    s += "  if (( CURRENT == 2 )); then\n    _describe command commands\n    _arguments " +
         join(specs, " ") + "\n    return\n  fi\n";
    s += "  local cmd=${words[2]}\n  shift words\n  (( CURRENT-- ))\n  case $cmd in\n";
    for (CLI::App* sub : subs) {
      s += "    " + sub->get_name() + ") " + name + "_" + sub->get_name() + " ;;\n";
    }
    s += "  esac\n}\n";
    for (CLI::App* sub : subs) s += zsh_function(name + "_" + sub->get_name(), *sub);
    return s;
  }
  if (has_positionals(app)) specs.emplace_back("'*:file:_files'");
  s += "  _arguments " + join(specs, " ") + "\n}\n";
  return s;
}

std::string zsh_script(CLI::App& app) {
  return "#compdef stagelog\n"
         "# zsh completion for stagelog (stagelog completion zsh). Install: save it as _stagelog\n"
         "# in a folder of $fpath, e.g. stagelog completion zsh > ~/.zfunc/_stagelog\n" +
         zsh_function("_stagelog", app) + "_stagelog \"$@\"\n";
}

std::string fish_script(CLI::App& app) {
  std::vector<std::pair<std::vector<std::string>, CLI::App*>> paths;
  std::vector<std::string> path;
  walk(app, path, paths);
  std::string s =
      "# fish completion for stagelog (stagelog completion fish). Install:\n"
      "#   stagelog completion fish > ~/.config/fish/completions/stagelog.fish\n"
      "complete -c stagelog -f\n";
  for (CLI::App* sub : commands_of(app)) {
    s += "complete -c stagelog -n __fish_use_subcommand -a " + sub->get_name() + " -d '" +
         summary(sub->get_description()) + "'\n";
  }
  for (const auto& [p, sub] : paths) {
    std::string cond = "'__fish_seen_subcommand_from " + p.back() + "'";
    for (CLI::App* child : commands_of(*sub)) {
      s += "complete -c stagelog -n " + cond + " -a " + child->get_name() + " -d '" +
           summary(child->get_description()) + "'\n";
    }
    for (const OptionInfo& o : options_of(*sub)) {
      bool lng = o.name.starts_with("--");
      s += "complete -c stagelog -n " + cond + (lng ? " -l " : " -s ") +
           o.name.substr(lng ? 2 : 1) + (o.takes_value ? " -r -F" : "") + " -d '" +
           summary(o.description) + "'\n";
    }
    if (has_positionals(*sub)) s += "complete -c stagelog -n " + cond + " -F\n";
  }
  s += "complete -c stagelog -n '__fish_seen_subcommand_from help' -a '" + names_of(app) + "'\n";
  s += "complete -c stagelog -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n";
  for (char& c : s) {
    if (c == ',') c = ' ';
  }
  return s;
}

}  // namespace

Command add_help(CLI::App& app) {
  auto words = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand(
      "help",
      "Show the help of stagelog or of a command: stagelog help serve, stagelog help "
      "token create");
  cmd->add_option("command", *words, "The command (and its subcommand)");
  return [&app, words]() -> int {
    CLI::App* at = &app;
    std::string name = app.get_name();
    for (const std::string& word : *words) {
      CLI::App* next = nullptr;
      for (CLI::App* sub : commands_of(*at)) {
        if (sub->get_name() == word) next = sub;
      }
      if (!next) {
        throw Error("help: no command '" + word + "' (there are " + names_of(*at) + ")");
      }
      at = next;
      name += " " + word;
    }
    // The formatter itself: App::help() would show the help of the command parsed last, this
    // one ("help"), whatever it is called on.
    print(at->get_formatter()->make_help(at, name, CLI::AppFormatMode::Normal));
    return 0;
  };
}

Command add_completion(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "completion", "Print a shell completion script for stagelog's commands and options");
  cmd->add_option("shell", *shell, "bash, zsh or fish")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  cmd->footer(
      "Examples:\n"
      "  source <(stagelog completion bash)\n"
      "  stagelog completion bash > ~/.local/share/bash-completion/completions/stagelog\n"
      "  stagelog completion zsh > ~/.zfunc/_stagelog    # with fpath+=~/.zfunc in .zshrc\n"
      "  stagelog completion fish > ~/.config/fish/completions/stagelog.fish\n"
      "The packages install them for every user.");
  return [&app, shell]() -> int {
    if (*shell == "bash") print(bash_script(app));
    if (*shell == "zsh") print(zsh_script(app));
    if (*shell == "fish") print(fish_script(app));
    return 0;
  };
}

}  // namespace stagelog::cli
