// Package totpd holds thin helpers for Go clients of the totpd gRPC service (totpd.v1):
// a client constructor that puts a default deadline on every call, and readers of the
// google.rpc error details that totpd attaches to every error.
//
// The generated stubs themselves are in the subpackage totpdv1, produced by ./generate.sh
// (they are never committed).
//
// Branch on the stable ErrorInfo reason, never on the message text:
//
//	_, err := client.VerifyTotp(ctx, &totpdv1.VerifyTotpRequest{UserId: id, Code: code})
//	switch totpd.ErrorReason(err) {
//	case "":                        // accepted (err == nil), or not an error from totpd
//	case totpd.ReasonInvalidCode:   // wrong, reused or out-of-window code
//	case totpd.ReasonTooManyAttempts: // locked out; see totpd.RetryDelay(err)
//	}
package totpd

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/totpd/totpd/clients/go/totpdv1"
)

// Domain is the google.rpc.ErrorInfo domain of every error that totpd returns.
const Domain = "totpd"

// The google.rpc.ErrorInfo reasons that totpd returns, as documented in the proto.
const (
	// ReasonInvalidRequest: INVALID_ARGUMENT for malformed input; a BadRequest detail
	// names each offending field (see FieldViolations).
	ReasonInvalidRequest = "INVALID_REQUEST"
	// ReasonInvalidCode: INVALID_ARGUMENT for a wrong, reused or out-of-window code.
	ReasonInvalidCode = "INVALID_CODE"
	// ReasonTotpNotFound: NOT_FOUND when the user has no such pending or active TOTP.
	ReasonTotpNotFound = "TOTP_NOT_FOUND"
	// ReasonTooManyAttempts: RESOURCE_EXHAUSTED while locked out (see RetryDelay).
	ReasonTooManyAttempts = "TOO_MANY_ATTEMPTS"
	// ReasonRequestIDAlreadyUsed: ALREADY_EXISTS when a CreateTotp request_id names an
	// enrollment that is no longer pending, or was first used with other parameters.
	ReasonRequestIDAlreadyUsed = "REQUEST_ID_ALREADY_USED"
	// ReasonStoreUnavailable: UNAVAILABLE when the backing store cannot be reached in time.
	ReasonStoreUnavailable = "STORE_UNAVAILABLE"
)

// DefaultTimeout is the deadline Dial puts on a call whose context has none.
const DefaultTimeout = 5 * time.Second

// Client is a totpd client: the generated TotpServiceClient over its own connection.
type Client struct {
	totpdv1.TotpServiceClient
	conn *grpc.ClientConn
}

// Dial returns a Client of the totpd server at target (for example "127.0.0.1:50051" or
// "dns:///totpd.internal:50051"). Every call whose context has no deadline gets
// DefaultTimeout. The connection is plaintext unless opts set other transport
// credentials (the last WithTransportCredentials wins). Like grpc.NewClient, Dial does no
// I/O: an unreachable server shows up as UNAVAILABLE on the first call.
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(defaultTimeout(DefaultTimeout)),
	}, opts...)
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, err
	}
	return &Client{TotpServiceClient: totpdv1.NewTotpServiceClient(conn), conn: conn}, nil
}

// Conn returns the underlying connection, for example to share it with a health client.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// defaultTimeout gives a call whose context has no deadline the deadline d.
func defaultTimeout(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// details returns the google.rpc details of err's status; nil if err carries no status.
func details(err error) []any {
	if err == nil {
		return nil
	}
	var withStatus interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &withStatus) {
		return nil
	}
	return withStatus.GRPCStatus().Details()
}

// ErrorInfo returns the google.rpc.ErrorInfo detail of domain "totpd" that err carries,
// or nil if err is nil or not such an error (for example a deadline the client set).
func ErrorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range details(err) {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info
		}
	}
	return nil
}

// ErrorReason returns the stable reason of a totpd error (for example "INVALID_CODE", see
// the Reason constants), or "" if err is nil or carries no ErrorInfo of domain "totpd".
func ErrorReason(err error) string {
	return ErrorInfo(err).GetReason()
}

// FieldViolations returns the google.rpc.BadRequest field violations of an
// INVALID_REQUEST error (one per offending request field), or nil.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	for _, d := range details(err) {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br.GetFieldViolations()
		}
	}
	return nil
}

// RetryDelay returns the google.rpc.RetryInfo delay of a throttled call
// (TOO_MANY_ATTEMPTS), and false if err carries none.
func RetryDelay(err error) (time.Duration, bool) {
	for _, d := range details(err) {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
