"""The one error the host-side tools report: what cannot work, and why (render.RenderError)."""


class RenderError(Exception):
    """A hardware/preset pair, a make variable or preset data that cannot work, with the reason."""


# How to make the secrets a refusal asks for: one wording for every tool that asks.
API_KEY_HINT = "`make api-key` writes a new random key to secrets/api_key (API_KEY_FILE= for another file)"
HF_TOKEN_HINT = "`install -D -m 600 /dev/stdin secrets/hf_token <<< hf_...`: Llama 3.1 is a gated model"
