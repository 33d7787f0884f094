// toolhive-runner runs ToolHive's proxy runner library (pkg/runner) in front of a remote MCP server,
// without a container runtime: the same middleware chain `thv run` and thv-proxyrunner build (tools
// filter, tool-call filter, authentication, MCP parser, validating webhooks), served on a local port.
//
// The tools filter comes from an MCPToolConfig object as the API server holds it (YAML or JSON, e.g.
// `kubectl get mcptoolconfig NAME -o yaml`), so a test enforces exactly what an operator wrote. A
// RunConfig rendered by ToolHive's own operator (the runconfig.json of an MCPRemoteProxy's ConfigMap)
// can be the starting point instead of flags. ToolHive applies a changed MCPToolConfig by restarting
// the proxy with a re-rendered RunConfig; so does whoever runs this program.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"sigs.k8s.io/yaml"

	mcpv1beta1 "github.com/stacklok/toolhive/cmd/thv-operator/api/v1beta1"
	"github.com/stacklok/toolhive/pkg/runner"
	"github.com/stacklok/toolhive/pkg/transport/types"
	"github.com/stacklok/toolhive/pkg/webhook"
	"github.com/stacklok/toolhive/pkg/workloads/statuses"
)

func main() {
	runConfigFile := flag.String("runconfig", "", "a RunConfig JSON file to start from (e.g. rendered by thv-operator)")
	remoteURL := flag.String("remote-url", "", "the MCP server to proxy (overrides the RunConfig's)")
	name := flag.String("name", "", "the server name (the webhooks' context.server_name; overrides the RunConfig's)")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (required)")
	transport := flag.String("transport", "", "streamable-http or sse (default: the RunConfig's, else streamable-http)")
	toolConfigFile := flag.String("tool-config", "", "an MCPToolConfig object (YAML/JSON): its spec replaces the tools filter")
	webhooksFile := flag.String("webhooks", "", "a ToolHive webhook file (validating: [...], mutating: [...])")
	flag.Parse()

	if err := run(*runConfigFile, *remoteURL, *name, *host, *port, *transport, *toolConfigFile, *webhooksFile); err != nil {
		fmt.Fprintln(os.Stderr, "toolhive-runner:", err)
		os.Exit(1)
	}
}

func run(runConfigFile, remoteURL, name, host string, port int, transport, toolConfigFile, webhooksFile string) error {
	config := runner.NewRunConfig()
	if runConfigFile != "" {
		f, err := os.Open(runConfigFile) // #nosec G304 -- the caller names the file
		if err != nil {
			return err
		}
		defer f.Close()
		if config, err = runner.ReadJSON(f); err != nil {
			return fmt.Errorf("reading %s: %w", runConfigFile, err)
		}
	}
	if remoteURL != "" {
		config.RemoteURL = remoteURL
	}
	if name != "" {
		config.Name = name
	}
	if config.Name == "" || config.RemoteURL == "" || port == 0 {
		return fmt.Errorf("a remote URL, a name and a port are required (flags or -runconfig)")
	}
	config.BaseName, config.ContainerName = config.Name, config.Name
	config.Host, config.Port = host, port
	config.Image, config.Deployer = "", nil // a remote server: nothing to deploy
	if transport != "" {
		config.Transport = types.TransportType(transport)
	} else if config.Transport == "" {
		config.Transport = types.TransportTypeStreamableHTTP
	}

	if toolConfigFile != "" {
		data, err := os.ReadFile(toolConfigFile) // #nosec G304
		if err != nil {
			return err
		}
		var toolConfig mcpv1beta1.MCPToolConfig
		if err := yaml.UnmarshalStrict(data, &toolConfig); err != nil {
			return fmt.Errorf("reading the MCPToolConfig %s: %w", toolConfigFile, err)
		}
		// As thv-operator's resolveToolConfig does for an MCPRemoteProxy's toolConfigRef.
		config.ToolsFilter, config.ToolsOverride = toolConfig.Spec.ToolsFilter, nil
		for actual, override := range toolConfig.Spec.ToolsOverride {
			if config.ToolsOverride == nil {
				config.ToolsOverride = map[string]runner.ToolOverride{}
			}
			config.ToolsOverride[actual] = runner.ToolOverride{Name: override.Name, Description: override.Description}
		}
	}
	if webhooksFile != "" {
		hooks, err := webhook.LoadConfig(webhooksFile)
		if err != nil {
			return err
		}
		if err := webhook.ValidateConfig(hooks); err != nil {
			return err
		}
		config.ValidatingWebhooks, config.MutatingWebhooks = hooks.Validating, hooks.Mutating
	}
	// The runner builds the middleware chain from the fields above when none is given (the RunConfig that
	// thv-operator renders carries one built from its own fields: rebuild it from the changed ones).
	config.MiddlewareConfigs = nil

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "toolhive-runner: %s on http://%s:%d/mcp -> %s, tools filter %q, %d validating webhook(s)\n",
		config.Name, host, port, config.RemoteURL, config.ToolsFilter, len(config.ValidatingWebhooks))
	return runner.NewRunner(config, statuses.NewNoopStatusManager()).Run(ctx)
}
