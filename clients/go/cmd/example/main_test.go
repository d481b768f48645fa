package main

// These tests run against a live totpd server at TOTPD_ADDRESS and fail (not skip) when
// it is unset: in CI they are the Go client's smoke test of the real service.
//
//	TOTPD_ADDRESS=127.0.0.1:50051 go test -count=1 ./...

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	totpd "github.com/totpd/totpd/clients/go"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

// liveClient returns a client of the server at TOTPD_ADDRESS and a context for one test;
// each test deletes its user's TOTP when it ends.
func liveClient(t *testing.T) (context.Context, *totpd.Client) {
	t.Helper()
	address := os.Getenv("TOTPD_ADDRESS")
	if address == "" {
		t.Fatal("TOTPD_ADDRESS is unset: start a totpd server (python -m totpd) and set it to the host:port it listens on")
	}
	client, err := totpd.Dial(address)
	if err != nil {
		t.Fatalf("Dial(%q): %v", address, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx, client
}

// newUser returns a fresh user_id whose TOTP factors are deleted when the test ends.
func newUser(t *testing.T, ctx context.Context, client *totpd.Client) string {
	t.Helper()
	userID := NewUserID("go-test")
	t.Cleanup(func() {
		if _, err := client.DeleteTotp(ctx, &totpdv1.DeleteTotpRequest{UserId: userID}); err != nil {
			t.Errorf("DeleteTotp cleanup: %v", err)
		}
	})
	return userID
}

// wantError fails the test unless err has status code want, an ErrorInfo of domain
// "totpd" and the given reason.
func wantError(t *testing.T, err error, want codes.Code, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s with reason %s", want, reason)
	}
	if got := status.Code(err); got != want {
		t.Errorf("status code = %s, want %s (err: %v)", got, want, err)
	}
	info := totpd.ErrorInfo(err)
	if info == nil {
		t.Fatalf("no google.rpc.ErrorInfo with domain %q in %v", totpd.Domain, err)
	}
	if info.GetDomain() != "totpd" || info.GetReason() != reason {
		t.Errorf("ErrorInfo = {domain %q, reason %q}, want {domain \"totpd\", reason %q}",
			info.GetDomain(), info.GetReason(), reason)
	}
	if got := totpd.ErrorReason(err); got != reason {
		t.Errorf("ErrorReason = %q, want %q", got, reason)
	}
}

// recorder remembers the CreateTotp responses that pass through it.
type recorder struct {
	totpdv1.TotpServiceClient
	created []*totpdv1.CreateTotpResponse
}

func (r *recorder) CreateTotp(ctx context.Context, in *totpdv1.CreateTotpRequest,
	opts ...grpc.CallOption) (*totpdv1.CreateTotpResponse, error) {
	resp, err := r.TotpServiceClient.CreateTotp(ctx, in, opts...)
	if err == nil {
		r.created = append(r.created, resp)
	}
	return resp, err
}

func TestExampleFlow(t *testing.T) {
	ctx, client := liveClient(t)
	userID := newUser(t, ctx, client)
	rec := &recorder{TotpServiceClient: client}
	var out bytes.Buffer

	if err := Run(ctx, rec, userID, time.Now, &out); err != nil {
		t.Fatalf("Run: %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	if len(rec.created) != 1 {
		t.Fatalf("CreateTotp calls = %d, want 1", len(rec.created))
	}
	created := rec.created[0]
	if len(created.GetSecret()) != 32 {
		t.Errorf("secret has %d characters, want 32", len(created.GetSecret()))
	}
	for _, secret := range append([]string{created.GetSecret(), created.GetOtpauthUri()}, created.GetRecoveryCodes()...) {
		if strings.Contains(out.String(), secret) {
			t.Errorf("the output shows a secret, otpauth URI or recovery code")
		}
	}
	for _, call := range []string{"CreateTotp:", "ActivateTotp:", "VerifyTotp:"} {
		if !strings.Contains(out.String(), call) {
			t.Errorf("the output has no %q line", call)
		}
	}

	got, err := client.GetTotp(ctx, &totpdv1.GetTotpRequest{UserId: userID})
	if err != nil {
		t.Fatalf("GetTotp: %v", err)
	}
	active := got.GetActiveTotp()
	if active.GetTotpId() != created.GetTotpId() || active.GetState() != totpdv1.TotpState_TOTP_STATE_ACTIVE {
		t.Errorf("active TOTP = %s %s, want %s TOTP_STATE_ACTIVE",
			active.GetTotpId(), active.GetState(), created.GetTotpId())
	}
	if active.GetLastUsedTime() == nil {
		t.Error("the active TOTP has no last_used_time after VerifyTotp")
	}
	if got.GetRecoveryCodesRemaining() != 10 {
		t.Errorf("recovery_codes_remaining = %d, want 10", got.GetRecoveryCodesRemaining())
	}
}

func TestActivateMalformedCode(t *testing.T) {
	ctx, client := liveClient(t)
	userID := newUser(t, ctx, client)
	created, err := client.CreateTotp(ctx, &totpdv1.CreateTotpRequest{UserId: userID})
	if err != nil {
		t.Fatalf("CreateTotp: %v", err)
	}

	_, err = client.ActivateTotp(ctx, &totpdv1.ActivateTotpRequest{
		UserId: userID, TotpId: created.GetTotpId(), Code: "12ab56",
	})

	wantError(t, err, codes.InvalidArgument, totpd.ReasonInvalidRequest)
	var fields []string
	for _, v := range totpd.FieldViolations(err) {
		fields = append(fields, v.GetField())
	}
	if len(fields) != 1 || fields[0] != "code" {
		t.Errorf("BadRequest field violations = %v, want [code]", fields)
	}
}

func TestVerifyUnknownUser(t *testing.T) {
	ctx, client := liveClient(t)
	userID := newUser(t, ctx, client)

	_, err := client.VerifyTotp(ctx, &totpdv1.VerifyTotpRequest{UserId: userID, Code: "123456"})

	wantError(t, err, codes.NotFound, totpd.ReasonTotpNotFound)
}

func TestVerifyReusedCode(t *testing.T) {
	ctx, client := liveClient(t)
	userID := newUser(t, ctx, client)
	created, err := client.CreateTotp(ctx, &totpdv1.CreateTotpRequest{UserId: userID})
	if err != nil {
		t.Fatalf("CreateTotp: %v", err)
	}
	code, err := Code(created.GetSecret(), created.GetTotp(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ActivateTotp(ctx, &totpdv1.ActivateTotpRequest{
		UserId: userID, TotpId: created.GetTotpId(), Code: code,
	}); err != nil {
		t.Fatalf("ActivateTotp: %v", err)
	}

	// The activation used this code up.
	_, err = client.VerifyTotp(ctx, &totpdv1.VerifyTotpRequest{UserId: userID, Code: code})

	wantError(t, err, codes.InvalidArgument, totpd.ReasonInvalidCode)
}
