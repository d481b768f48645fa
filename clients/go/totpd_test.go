package totpd

// Unit tests of the helpers; they need no server (the live tests are in cmd/example).

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func statusErr(t *testing.T, code codes.Code, details ...*errdetails.ErrorInfo) error {
	t.Helper()
	st := status.New(code, "message text that clients must not parse")
	for _, d := range details {
		var err error
		if st, err = st.WithDetails(d); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func TestErrorReason(t *testing.T) {
	notFound := &errdetails.ErrorInfo{Domain: "totpd", Reason: ReasonTotpNotFound}
	foreign := &errdetails.ErrorInfo{Domain: "proxy.example", Reason: "UPSTREAM_RESET"}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"not a status", fmt.Errorf("dial failed"), ""},
		{"status without details", statusErr(t, codes.DeadlineExceeded), ""},
		{"totpd reason", statusErr(t, codes.NotFound, notFound), ReasonTotpNotFound},
		{"wrapped", fmt.Errorf("verify: %w", statusErr(t, codes.NotFound, notFound)), ReasonTotpNotFound},
		{"other domain only", statusErr(t, codes.Unavailable, foreign), ""},
		{"other domain first", statusErr(t, codes.NotFound, foreign, notFound), ReasonTotpNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ErrorReason(tt.err); got != tt.want {
				t.Errorf("ErrorReason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFieldViolationsAndRetryDelay(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "locked").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: ReasonTooManyAttempts},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(90 * time.Second)},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "code"}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := RetryDelay(st.Err()); !ok || d != 90*time.Second {
		t.Errorf("RetryDelay = %v, %t; want 1m30s, true", d, ok)
	}
	if v := FieldViolations(st.Err()); len(v) != 1 || v[0].GetField() != "code" {
		t.Errorf("FieldViolations = %v, want one for code", v)
	}
	if _, ok := RetryDelay(nil); ok {
		t.Error("RetryDelay(nil) reports a delay")
	}
}

func TestDefaultTimeout(t *testing.T) {
	intercept := defaultTimeout(time.Minute)
	deadlineOf := func(ctx context.Context) (d time.Time) {
		invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
			d, _ = ctx.Deadline()
			return nil
		}
		if err := intercept(ctx, "/totpd.v1.TotpService/GetTotp", nil, nil, nil, invoker); err != nil {
			t.Fatal(err)
		}
		return d
	}

	if d := time.Until(deadlineOf(context.Background())); d <= 0 || d > time.Minute {
		t.Errorf("a call without deadline got one %v away, want within a minute", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	want, _ := ctx.Deadline()
	if got := deadlineOf(ctx); !got.Equal(want) {
		t.Errorf("a call with a deadline got %v, want its own %v", got, want)
	}
}
