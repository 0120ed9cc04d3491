-- AlterTable
ALTER TABLE "SafetyRule" ADD COLUMN     "escalateAfterMinutes" INTEGER,
ADD COLUMN     "escalateTo" TEXT[] DEFAULT ARRAY[]::TEXT[];
