-- CreateTable
CREATE TABLE "StandingApproval" (
    "id" UUID NOT NULL,
    "spaceId" UUID NOT NULL,
    "userId" UUID,
    "actionType" TEXT NOT NULL,
    "condition" TEXT,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,
    "createdById" UUID NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revokedAt" TIMESTAMPTZ(3),
    "revokedById" UUID,

    CONSTRAINT "StandingApproval_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "StandingApproval_spaceId_actionType_expiresAt_idx" ON "StandingApproval"("spaceId", "actionType", "expiresAt");

-- AddForeignKey
ALTER TABLE "StandingApproval" ADD CONSTRAINT "StandingApproval_spaceId_fkey" FOREIGN KEY ("spaceId") REFERENCES "Space"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "StandingApproval" ADD CONSTRAINT "StandingApproval_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;
