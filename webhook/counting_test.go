package webhook_test

import (
	"context"
	"sync/atomic"

	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// countingClient counts the ResolutionRequests created through it.
type countingClient struct {
	client.Client
	created atomic.Int32
}

func (c *countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if _, ok := obj.(*resolutionv1beta1.ResolutionRequest); ok {
		c.created.Add(1)
	}
	return c.Client.Create(ctx, obj, opts...)
}
