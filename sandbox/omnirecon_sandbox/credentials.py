"""Fixed credentials the sandbox accepts (and hands out through `Sandbox.connections()`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxCredentials:
    shopify_access_token: str = "shpat_sandbox_0123456789abcdef"
    shopify_client_secret: str = "shpss_sandbox_webhook_secret_0123"     # signs webhook deliveries
    amazon_client_id: str = "amzn1.application-oa2-client.sandbox"
    amazon_client_secret: str = "amzn-sandbox-client-secret"
    amazon_refresh_token: str = "Atzr|sandbox-refresh-token"
    walmart_client_id: str = "walmart-sandbox-client"
    walmart_client_secret: str = "walmart-sandbox-secret"
    walmart_svc_name: str = "Walmart Marketplace"
    netsuite_consumer_key: str = "ns-sandbox-consumer-key"
    netsuite_consumer_secret: str = "ns-sandbox-consumer-secret"
    netsuite_token_id: str = "ns-sandbox-token-id"
    netsuite_token_secret: str = "ns-sandbox-token-secret"
    aws_access_key_id: str = "AKIASANDBOXNOTIFY000"                     # the SQS-compatible queue's SigV4 keys
    aws_secret_access_key: str = "sandbox/aws/secret/key/0123456789abcdefghij"
    aws_region: str = "us-east-1"
    aws_account_id: str = "000000000000"
