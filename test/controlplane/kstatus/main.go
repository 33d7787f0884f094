// kstatus reads Kubernetes objects as JSON (one object, or a List) on stdin and prints, per object,
// the health that kstatus computes: the library Flux, kpt and cli-utils use for health checks.
//
//	kubectl get toolserver demo -o json | kstatus
//	ToolServer/demo Current Resource is Ready
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// The unstructured JSON scheme keeps integers as int64, as kstatus expects.
	decoded, err := runtime.Decode(unstructured.UnstructuredJSONScheme, raw)
	if err != nil {
		fail(err)
	}
	var items []unstructured.Unstructured
	switch obj := decoded.(type) {
	case *unstructured.UnstructuredList:
		items = obj.Items
	case *unstructured.Unstructured:
		items = []unstructured.Unstructured{*obj}
	default:
		fail(fmt.Errorf("unexpected object %T", decoded))
	}
	for i := range items {
		u := &items[i]
		result, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s/%s %s %s\n", u.GetKind(), u.GetName(), result.Status, result.Message)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(2)
}
