"""Gateway adapters: what agents' gateways enforce, written from the allowed set of a ToolAllowlist.

Every gateway filters tools by name and knows nothing of definitions; these modules turn "the tools
approved at their current hash" into each gateway's own form. The pure parts (formats, protocols,
decisions) are separate from the I/O (contextforge.py is the only module here that talks to a
network; the ToolHive webhook's HTTPS server lives in handlers/). Imports: api/ only, never kube/,
reconcile/ or kopf (.importlinter).

- toolhive.py: the MCPToolConfig `toolsFilter` that fails closed (an empty one means every tool).
- toolhive_webhook.py: ToolHive's validating-webhook protocol, its HMAC signature, and the decision.
- contextforge_plan.py: which ContextForge tools to deactivate, activate and put in a virtual server.
- contextforge.py: the ContextForge REST client that carries a plan out.
"""
