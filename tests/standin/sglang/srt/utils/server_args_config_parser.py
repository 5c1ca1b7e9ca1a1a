"""SGLang CPU STAND-IN: ``--config FILE`` as SGLang 0.5.23 merges it (not the real engine).

Same behaviour as sglang/srt/utils/server_args_config_parser.py, applied to the
stand-in's parser (built from the flag catalogue with the same argparse action
classes): a YAML mapping whose keys are dests or long option names (``-`` or
``_``); ``true`` on a store_true flag gives the bare flag, ``false`` leaves it
out; a list gives ``--flag a b``; a mapping is passed as JSON; anything else as
``--flag value``. The config's arguments go *before* the command line's, so the
command line wins, and the merged argv is what ``launch_command`` shows.
"""

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml


def _config_keys(action: argparse.Action) -> set:
    # YAML keys may use any long spelling of a flag, not just the one matching dest.
    return {action.dest} | {
        option[2:].replace("-", "_") for option in action.option_strings if option.startswith("--")
    }


def _takes_one_value(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreAction) or action.nargs is None


class ConfigArgumentMerger:
    """Merges a YAML config file into argv (CLI > config > defaults)."""

    def __init__(self, parser: argparse.ArgumentParser):
        actions = parser._actions
        self.store_true_actions = {
            key for a in actions if isinstance(a, argparse._StoreTrueAction) for key in _config_keys(a)
        }
        supported = [a for a in actions
                     if isinstance(a, argparse._StoreTrueAction) or _takes_one_value(a)]
        supported_keys = {key for a in supported for key in _config_keys(a)}
        # Multi-value actions (BooleanOptionalAction, nargs="*" ...) cannot come from a file;
        # a key that a supported flag also reads (a shared dest) stays usable.
        self.unsupported_actions = {
            key: a
            for a in actions
            if a.option_strings and a not in supported
            and not {"--config", "--help", "-h"} & set(a.option_strings)
            for key in _config_keys(a)
            if key not in supported_keys
        }

    def merge_config_with_args(self, cli_args: List[str]) -> List[str]:
        config_file_path = self._extract_config_file_path(cli_args)
        if not config_file_path:
            return cli_args
        config_args = self._convert_config_to_args(self._parse_yaml_config(config_file_path))
        config_index = cli_args.index("--config")
        return config_args + cli_args[:config_index] + cli_args[config_index + 2:]

    @staticmethod
    def _extract_config_file_path(args: List[str]) -> Optional[str]:
        config_indices = [i for i, arg in enumerate(args) if arg == "--config"]
        if len(config_indices) > 1:
            raise ValueError("Multiple config files specified! Only one allowed.")
        if not config_indices:
            return None
        if config_indices[0] == len(args) - 1:
            raise ValueError("No config file specified after --config flag!")
        return args[config_indices[0] + 1]

    @staticmethod
    def _parse_yaml_config(file_path: str) -> Dict[str, Any]:
        path = Path(file_path)
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise ValueError(f"Config file must be YAML format, got: {path.suffix}")
        if not path.exists():
            raise ValueError(f"Config file not found: {file_path}")
        with open(file_path, "r") as file:
            config_data = yaml.safe_load(file)
        if config_data is None:
            config_data = {}
        if not isinstance(config_data, dict):
            raise ValueError("Config file must contain a dictionary at root level")
        return config_data

    def _convert_config_to_args(self, config: Dict[str, Any]) -> List[str]:
        args: List[str] = []
        for key, value in config.items():
            key_norm = key.replace("-", "_")
            if key_norm in self.unsupported_actions:
                action = self.unsupported_actions[key_norm]
                raise ValueError(f"Unsupported config option '{key_norm}' with action "
                                 f"'{action.__class__.__name__}'")
            if isinstance(value, bool):
                if key_norm in self.store_true_actions:
                    if value:
                        args.append(f"--{key}")
                else:
                    args.extend([f"--{key}", str(value).lower()])
            elif isinstance(value, list):
                if value:
                    args.append(f"--{key}")
                    args.extend(str(item) for item in value)
            elif isinstance(value, dict):
                args.extend([f"--{key}", json.dumps(value)])
            else:
                args.extend([f"--{key}", str(value)])
        return args
