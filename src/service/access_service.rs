//! `pax.ledger.v1.AccessService`: grants, revocations and credentials, each recorded as access
//! events of the principal's stream by the calling admin (the writer checks the grant).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{caller_of, convert, status};
use crate::audit::{hex, keys};
use crate::domain::access::{TOKEN_RANDOM_BYTES, token_of};
use crate::domain::{Credential, EventData, FieldError, PrincipalName, ProposedEvent};
use crate::ledger::{self, Caller, Ledger, PrincipalEntry};
use crate::proto::v1 as pb;

pub struct AccessService {
    ledger: Arc<Ledger>,
}

impl AccessService {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }

    /// Records `events` as one atomic request of `caller`.
    async fn record(&self, caller: Caller, events: Vec<EventData>) -> Result<pb::AccessChange, Status> {
        if matches!(caller, Caller::Anonymous) {
            return Err(Status::failed_precondition(
                "no principal exists yet: create the first admin offline with `pax-ledger principal bootstrap --data DIR`",
            ));
        }
        for data in &events {
            crate::domain::validate(data).map_err(invalid)?;
        }
        let events = events.into_iter().map(ProposedEvent::new).collect();
        let outcome = self
            .ledger
            .append_as(caller, ledger::AppendRequest { events, expectations: Vec::new() })
            .await
            .map_err(status::from_ledger)?;
        Ok(pb::AccessChange {
            events: outcome.events.iter().map(convert::appended_pb).collect(),
            record_time: Some(convert::to_timestamp(&outcome.recorded_at)),
        })
    }

    /// The principal's entry as of the durable head, or NOT_FOUND (every method that needs an
    /// existing principal says so alike; the writer checks again at the commit).
    fn entry(&self, name: &PrincipalName) -> Result<PrincipalEntry, Status> {
        self.ledger
            .access()
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("principal {name} does not exist")))
    }
}

fn invalid(error: FieldError) -> Status {
    status::invalid_argument(error)
}

fn principal(raw: &str) -> Result<PrincipalName, Status> {
    convert::principal_name("principal", raw).map_err(invalid)
}

/// A principal as the wire shows it.
pub fn principal_pb(entry: &PrincipalEntry) -> pb::Principal {
    pb::Principal {
        name: entry.state.name.to_string(),
        grants: entry.state.grants.iter().map(convert::grant_pb).collect(),
        credentials: entry.state.credentials.iter().map(convert::credential_pb).collect(),
        created_position: entry.created.0,
        updated_position: entry.updated.0,
    }
}

/// A SHA-256 fingerprint as 64 hexadecimal digits, colons and case as `openssl` may print them.
pub fn fingerprint(field: &str, raw: &str) -> Result<[u8; 32], FieldError> {
    let digits: String = raw.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    hex::decode::<32>(&digits).map_err(|_| {
        FieldError::new(
            field,
            format!("must be a SHA-256 fingerprint (64 hexadecimal digits), got {}", crate::domain::quote(raw)),
        )
    })
}

#[tonic::async_trait]
impl pb::access_service_server::AccessService for AccessService {
    async fn grant(&self, request: Request<pb::GrantRequest>) -> Result<Response<pb::AccessChange>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let principal = principal(&request.principal)?;
        let grants = convert::grants("grants", &request.grants).map_err(invalid)?;
        let data = EventData::AccessGranted { principal, grants, reason: request.reason };
        Ok(Response::new(self.record(caller, vec![data]).await?))
    }

    async fn revoke(&self, request: Request<pb::RevokeRequest>) -> Result<Response<pb::AccessChange>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let principal = principal(&request.principal)?;
        let reason = request.reason;
        let mut events = Vec::new();
        if request.grants.is_empty() {
            // Everything: every grant and every credential, in one atomic request.
            // Credentials first: each event is authorized against what its recorder holds just
            // before it, so an admin revoking itself keeps `admin` until the last event.
            let entry = self.entry(&principal)?;
            events.extend(entry.state.credentials.iter().map(|credential| EventData::CredentialRevoked {
                principal: principal.clone(),
                credential: *credential,
                reason: reason.clone(),
            }));
            if !entry.state.grants.is_empty() {
                events.push(EventData::AccessRevoked {
                    principal: principal.clone(),
                    grants: entry.state.grants.iter().cloned().collect(),
                    reason: reason.clone(),
                });
            }
            if events.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "principal {principal} holds no grant and no credential: nothing to revoke"
                )));
            }
        } else {
            let grants = convert::grants("grants", &request.grants).map_err(invalid)?;
            self.entry(&principal)?;
            events.push(EventData::AccessRevoked { principal, grants, reason });
        }
        Ok(Response::new(self.record(caller, events).await?))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let caller = caller_of(&request);
        let principal = principal(&request.get_ref().principal)?;
        self.entry(&principal)?;
        let mut random = [0u8; TOKEN_RANDOM_BYTES];
        getrandom::fill(&mut random)
            .map_err(|e| Status::unavailable(format!("the operating system's random generator failed: {e}")))?;
        let token = token_of(&random);
        let credential = Credential::of_token(&token);
        let change = self.record(caller, vec![EventData::CredentialIssued { principal, credential }]).await?;
        Ok(Response::new(pb::IssueTokenResponse {
            token,
            credential: Some(convert::credential_pb(&credential)),
            change: Some(change),
        }))
    }

    async fn bind_certificate(
        &self,
        request: Request<pb::BindCertificateRequest>,
    ) -> Result<Response<pb::AccessChange>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let principal = principal(&request.principal)?;
        let credential = Credential::of_certificate(fingerprint("fingerprint", &request.fingerprint).map_err(invalid)?);
        self.entry(&principal)?;
        Ok(Response::new(self.record(caller, vec![EventData::CredentialIssued { principal, credential }]).await?))
    }

    async fn register_signing_key(
        &self,
        request: Request<pb::RegisterSigningKeyRequest>,
    ) -> Result<Response<pb::AccessChange>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let principal = principal(&request.principal)?;
        let key =
            keys::parse_public_key(request.public_key.trim()).ok().filter(|key| !key.is_weak()).ok_or_else(|| {
                invalid(FieldError::new(
                    "public_key",
                    format!(
                        "must be an Ed25519 public key: 64 hexadecimal digits of a point of prime order, got {}",
                        crate::domain::quote(&request.public_key)
                    ),
                ))
            })?;
        let credential = Credential::of_signing_key(key.as_bytes());
        self.entry(&principal)?;
        Ok(Response::new(self.record(caller, vec![EventData::CredentialIssued { principal, credential }]).await?))
    }

    async fn revoke_credential(
        &self,
        request: Request<pb::RevokeCredentialRequest>,
    ) -> Result<Response<pb::AccessChange>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let principal = principal(&request.principal)?;
        let reason = request.reason;
        let wanted = request.credential.to_ascii_lowercase();
        // Malformed whatever the principal holds: INVALID_ARGUMENT, never NOT_FOUND.
        if !(16..=64).contains(&wanted.len()) || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(FieldError::new(
                "credential",
                format!(
                    "must be a credential's id (16 hexadecimal digits) or its full digest (64), got {}",
                    crate::domain::quote(&request.credential)
                ),
            )));
        }
        let entry = self.entry(&principal)?;
        let matching: Vec<Credential> =
            entry.state.credentials.iter().filter(|c| c.digest_hex().starts_with(&wanted)).copied().collect();
        let credential = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(Status::not_found(format!(
                    "principal {principal} holds no credential {}",
                    crate::domain::quote(&request.credential)
                )));
            }
            _ => {
                return Err(invalid(FieldError::new("credential", "names more than one credential; give more digits")));
            }
        };
        let data = EventData::CredentialRevoked { principal, credential, reason };
        Ok(Response::new(self.record(caller, vec![data]).await?))
    }

    async fn list_principals(
        &self,
        _request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        let position = self.ledger.durable_head().position.0;
        let access = self.ledger.access();
        Ok(Response::new(pb::ListPrincipalsResponse {
            principals: access.principals().map(principal_pb).collect(),
            position,
        }))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::Principal>, Status> {
        match caller_of(&request) {
            Caller::Principal(name) => Ok(Response::new(principal_pb(&self.entry(&name)?))),
            _ => Err(Status::failed_precondition(
                "no principal exists yet: every caller is anonymous (the ledger is open)",
            )),
        }
    }
}
