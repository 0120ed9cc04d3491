import { graphql } from './generated';

// Every operation the console sends, typed by graphql-codegen against schema/schema.graphql.

/** A refusal as every mutation payload carries it (spec §10 `UserError`). */
export const UserErrorFields = graphql(`
  fragment ConsoleUserError on UserError {
    code
    message
    field
  }
`);

export const MeQuery = graphql(`
  query ConsoleMe {
    me {
      role
      spaceId
      principalId
      user {
        id
        handle
      }
    }
  }
`);

export const ActionFieldsFragment = graphql(`
  fragment ConsoleActionFields on Action {
    id
    type
    status
    headline
    details {
      label
      value
      isList
      format
    }
    payload
    priority
    userId
    requestedBy
    createdAt
    updatedAt
    approvalExpiresAt
    requiresApproval
    revision
    revisions {
      revision
      author
      diff
      createdAt
    }
    approvalsRequired
    decisions {
      approver
      decision
      comment
      revision
      createdAt
    }
    error
  }
`);

export const PendingActionsQuery = graphql(`
  query ConsolePendingActions($first: Int!, $after: String) {
    actions(first: $first, after: $after, filter: { status: [PENDING] }) {
      edges {
        node {
          ...ConsoleActionFields
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const RecentActionsQuery = graphql(`
  query ConsoleRecentActions($filter: ActionFilter, $first: Int!, $after: String) {
    actions(first: $first, after: $after, filter: $filter) {
      edges {
        node {
          id
          type
          status
          headline
          updatedAt
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const ActionTypesQuery = graphql(`
  query ConsoleActionTypes {
    actionTypes {
      type
      description
      payloadSchema
    }
  }
`);

export const ActionEventsSubscription = graphql(`
  subscription ConsoleActionEvents {
    actionEvents {
      actionId
      status
      seq
      message
      action {
        ...ConsoleActionFields
      }
    }
  }
`);

export const ApproveMutation = graphql(`
  mutation ConsoleApprove($id: ID!, $comment: String, $payload: JSON, $revision: Int) {
    approveAction(id: $id, comment: $comment, payload: $payload, revision: $revision) {
      action {
        id
        status
        revision
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const RejectMutation = graphql(`
  mutation ConsoleReject($id: ID!, $reason: String) {
    rejectAction(id: $id, reason: $reason) {
      action {
        id
        status
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const ActionTimelineQuery = graphql(`
  query ConsoleActionTimeline($id: ID!) {
    action(id: $id) {
      ...ConsoleActionFields
      result
      statusUpdates {
        seq
        status
        message
        timestamp
      }
      executions {
        id
        handler
        kind
        attempt
        status
        startedAt
        finishedAt
        error
        externalRef
      }
      receipts {
        id
        receiptNumber
        handler
        provider
        externalRef
        keyId
        signature
        createdAt
      }
    }
  }
`);

export const ActionStatusSubscription = graphql(`
  subscription ConsoleActionStatus($actionId: ID!) {
    actionStatus(actionId: $actionId) {
      seq
      status
      message
      timestamp
    }
  }
`);

export const ManualTasksQuery = graphql(`
  query ConsoleManualTasks($first: Int!, $after: String) {
    manualTasks(first: $first, after: $after, status: OPEN) {
      edges {
        node {
          id
          instructions
          status
          createdAt
          action {
            id
            type
            headline
            status
          }
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const CompleteTaskMutation = graphql(`
  mutation ConsoleCompleteTask($id: ID!, $outcome: JSON) {
    completeManualTask(id: $id, outcome: $outcome) {
      task {
        id
        status
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const AuditQuery = graphql(`
  query ConsoleAudit($first: Int, $before: String, $actionId: ID, $filter: AuditFilter) {
    auditLog(last: $first, before: $before, actionId: $actionId, filter: $filter) {
      edges {
        node {
          id
          chain
          chainSeq
          event
          actor
          createdAt
          data
          hash
        }
      }
      pageInfo {
        hasPreviousPage
        startCursor
      }
    }
  }
`);

export const AuditVerificationQuery = graphql(`
  query ConsoleAuditVerification {
    auditVerification {
      ok
      entriesChecked
      checkpoints
      sealed
      unsealed
      problem
    }
  }
`);

// ---- Admin pages -------------------------------------------------------------------------


export const SafetyRuleFieldsFragment = graphql(`
  fragment ConsoleSafetyRuleFields on SafetyRule {
    id
    ruleKey
    actionType
    kind
    limit
    windowSeconds
    condition
    approvalsRequired
    escalateAfterMinutes
    escalateTo
    graceSeconds
    enabled
    description
    spaceId
    updatedAt
  }
`);

export const AdminTypesQuery = graphql(`
  query ConsoleAdminTypes {
    actionTypes {
      type
      description
      handlers
      payloadSchema
    }
    apiKeys {
      userId
      userHandle
    }
  }
`);

export const SafetyRulesQuery = graphql(`
  query ConsoleSafetyRules {
    safetyRules {
      ...ConsoleSafetyRuleFields
    }
  }
`);

export const UpsertSafetyRuleMutation = graphql(`
  mutation ConsoleUpsertSafetyRule($input: SafetyRuleInput!) {
    upsertSafetyRule(input: $input) {
      rule {
        ...ConsoleSafetyRuleFields
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const TestConditionQuery = graphql(`
  query ConsoleTestCondition($type: String!, $condition: String!, $payload: JSON!, $userId: ID) {
    testCondition(type: $type, condition: $condition, payload: $payload, userId: $userId) {
      matches
      evaluationError
      line
      column
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const HandlerConfigsQuery = graphql(`
  query ConsoleHandlerConfigs {
    handlerConfigs {
      id
      handler
      provider
      settings
      enabled
      hasSecrets
      secretNames
      updatedAt
    }
  }
`);

export const UpsertHandlerConfigMutation = graphql(`
  mutation ConsoleUpsertHandlerConfig($input: HandlerConfigInput!) {
    upsertHandlerConfig(input: $input) {
      config {
        id
        handler
        provider
        hasSecrets
        secretNames
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const ApiKeysQuery = graphql(`
  query ConsoleApiKeys {
    apiKeys {
      id
      prefix
      role
      principalId
      name
      userId
      userHandle
      createdAt
      revokedAt
    }
  }
`);

export const CreateApiKeyMutation = graphql(`
  mutation ConsoleCreateApiKey($input: ApiKeyInput!) {
    createApiKey(input: $input) {
      key
      apiKey {
        id
        prefix
        role
        name
        userHandle
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const RevokeApiKeyMutation = graphql(`
  mutation ConsoleRevokeApiKey($id: ID!) {
    revokeApiKey(id: $id) {
      apiKey {
        id
        revokedAt
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const WebhookEndpointsQuery = graphql(`
  query ConsoleWebhookEndpoints {
    webhookEndpoints {
      id
      url
      events
      enabled
      consecutiveFailures
      disabledAt
      disabledReason
      createdAt
      updatedAt
    }
  }
`);

export const UpsertWebhookEndpointMutation = graphql(`
  mutation ConsoleUpsertWebhookEndpoint($input: WebhookEndpointInput!) {
    upsertWebhookEndpoint(input: $input) {
      endpoint {
        id
        url
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const WebhookDeliveriesQuery = graphql(`
  query ConsoleWebhookDeliveries($endpointId: ID!) {
    webhookDeliveries(endpointId: $endpointId, first: 20) {
      edges {
        node {
          id
          actionId
          seq
          status
          state
          attempts
          lastStatusCode
          lastError
          createdAt
          deliveredAt
          nextAttemptAt
        }
      }
    }
  }
`);

export const StandingApprovalsQuery = graphql(`
  query ConsoleStandingApprovals($active: Boolean) {
    standingApprovals(active: $active) {
      id
      type
      userId
      condition
      expiresAt
      createdAt
      createdBy
      revokedAt
      active
    }
  }
`);

export const CreateStandingApprovalMutation = graphql(`
  mutation ConsoleCreateStandingApproval($input: StandingApprovalInput!) {
    createStandingApproval(input: $input) {
      standingApproval {
        id
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

export const RevokeStandingApprovalMutation = graphql(`
  mutation ConsoleRevokeStandingApproval($id: ID!) {
    revokeStandingApproval(id: $id) {
      standingApproval {
        id
        revokedAt
      }
      errors {
        ...ConsoleUserError
      }
    }
  }
`);

// ---- Overview ----------------------------------------------------------------------------

export const StatsQuery = graphql(`
  query ConsoleStats($from: DateTime, $to: DateTime, $bucket: StatsBucket) {
    stats(from: $from, to: $to, bucket: $bucket) {
      from
      to
      bucket
      total
      byStatus {
        status
        count
      }
      byType {
        type
        count
      }
      series {
        bucketStart
        type
        status
        count
      }
      approvalWait {
        count
        p50Seconds
        p90Seconds
        maxSeconds
      }
      handlers {
        handler
        attempts
        succeeded
        failed
        fellBack
        unfinished
        successRate
        fallbackRate
      }
      queue {
        pendingApproval
        queued
        scheduled
        executing
        waitingOnProvider
        waitingOnOperator
        openManualTasks
      }
    }
  }
`);
