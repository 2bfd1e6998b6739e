"""`/api/package-buckets`: your reusable package groups, with bulk text import."""

import uuid

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from infrahaus_api.auth import CurrentUser
from infrahaus_api.etag import ETAG_STRONG, ETAG_WEAK
from infrahaus_api.idempotency import Idempotency
from infrahaus_api.pagination import Cursor, Limit
from infrahaus_domain.buckets.schemas import (
    BucketCreate,
    BucketPackagesAdd,
    BucketPage,
    BucketRead,
    BucketUpdate,
    ImportResult,
)
from infrahaus_domain.buckets.service import PackageBucketService, to_read


class PackageBucketController(Controller):
    path = "/package-buckets"
    tags = ["package-buckets"]

    @get(
        "",
        operation_id="listPackageBuckets",
        summary="List your package buckets",
        opt=ETAG_WEAK,
    )
    async def list_buckets(
        self, current_user: CurrentUser, buckets: PackageBucketService, limit: Limit = 50, cursor: Cursor = None
    ) -> BucketPage:
        return await buckets.list_page(current_user.id, limit=limit, cursor=cursor)

    @post("", operation_id="createPackageBucket", summary="Create a package bucket")
    async def create_bucket(
        self,
        current_user: CurrentUser,
        buckets: PackageBucketService,
        idempotency: Idempotency,
        data: JSONBody[BucketCreate],
    ) -> Response[BucketRead]:
        if replay := await idempotency.replay(data):
            return replay
        bucket = await buckets.create_bucket(current_user.id, data)
        location = f"/api/package-buckets/{bucket.id}"
        return await idempotency.record(Response(to_read(bucket), status_code=201, headers={"Location": location}))

    @get(
        "/{bucket_id:uuid}",
        operation_id="getPackageBucket",
        summary="Get a package bucket with its packages",
        opt=ETAG_STRONG,
    )
    async def get_bucket(
        self, current_user: CurrentUser, buckets: PackageBucketService, bucket_id: FromPath[uuid.UUID]
    ) -> BucketRead:
        return to_read(await buckets.get_owned(current_user.id, bucket_id))

    @patch("/{bucket_id:uuid}", operation_id="updatePackageBucket", summary="Rename or describe a package bucket")
    async def update_bucket(
        self,
        current_user: CurrentUser,
        buckets: PackageBucketService,
        bucket_id: FromPath[uuid.UUID],
        data: JSONBody[BucketUpdate],
    ) -> BucketRead:
        return to_read(await buckets.update_bucket(current_user.id, bucket_id, data))

    @delete("/{bucket_id:uuid}", operation_id="deletePackageBucket", summary="Delete a package bucket")
    async def delete_bucket(
        self, current_user: CurrentUser, buckets: PackageBucketService, bucket_id: FromPath[uuid.UUID]
    ) -> None:
        await buckets.delete_bucket(current_user.id, bucket_id)

    @post(
        "/{bucket_id:uuid}/packages",
        operation_id="addPackageBucketPackages",
        summary="Add packages to a bucket",
        description=(
            "Send a list of packages, or bulk text (one package per line, `#` starts a comment). Packages "
            "already in the bucket are skipped."
        ),
        status_code=200,
    )
    async def add_packages(
        self,
        current_user: CurrentUser,
        buckets: PackageBucketService,
        bucket_id: FromPath[uuid.UUID],
        data: JSONBody[BucketPackagesAdd],
    ) -> ImportResult:
        return await buckets.add_packages(current_user.id, bucket_id, data)

    @delete(
        "/{bucket_id:uuid}/packages/{package_id:uuid}",
        operation_id="removePackageBucketPackage",
        summary="Remove one package from a bucket",
    )
    async def remove_package(
        self,
        current_user: CurrentUser,
        buckets: PackageBucketService,
        bucket_id: FromPath[uuid.UUID],
        package_id: FromPath[uuid.UUID],
    ) -> None:
        await buckets.remove_package(current_user.id, bucket_id, package_id)
