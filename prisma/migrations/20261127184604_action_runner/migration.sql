-- AlterTable
ALTER TABLE "Action" ADD COLUMN     "runner" TEXT;
